//! Resolution speed (`docs/architecture.md#resolution`): plans per second on a 1,024-entry
//! source list, the largest list the server accepts (`cascade_core::limits`).
//!
//! The list models a large organisation: 256 offices, each with a /24 served by its update
//! agent, a /24 URL mirror, a per-office span and a single-address exception, so a client's
//! address matches a few entries spread through the list and every entry is looked at.
//! Clients are drawn from all offices and from addresses no entry matches. Run with
//! `cargo bench -p cascade-core --bench resolve`; the figure to read is the throughput line
//! (elements/s = plans/s) of the `Resolver` lines; `resolve()` linear is the reference.

#![allow(clippy::expect_used)] // a benchmark: an invalid fixture should stop it
#![allow(missing_docs)] // criterion's macros define undocumented functions

use std::fmt::Write as _;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use cascade_core::{resolve, Category, Policy, Resolver};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const OFFICES: u32 = 256;

/// The policy: 256 agents and 1,024 list entries, customized mode, fallback to the server.
fn policy() -> Policy {
    let mut toml = String::from(
        "mode = \"customized\"\nactiveupdate_url = \"https://updates.example.net/\"\n",
    );
    for o in 0..OFFICES {
        let _ = write!(
            toml,
            "[[agent]]\naddress = \"10.{}.{}.5:8443\"\ncapabilities = [\"components\", \"domain-settings\", \"programs\"]\n",
            o / 16,
            (o % 16) * 16,
        );
    }
    for o in 0..OFFICES {
        let (a, b) = (o / 16, (o % 16) * 16);
        let _ = write!(
            toml,
            "[[sources]]\nrange = \"10.{a}.{b}.7\"\nurl = \"https://exception-{o}.example.net/\"\n\
             [[sources]]\nrange = \"10.{a}.{b}.0/24\"\nagent = \"10.{a}.{b}.5:8443\"\n\
             [[sources]]\nrange = \"10.{a}.{}.0/24\"\nurl = \"https://mirror-{o}.example.net/\"\n\
             [[sources]]\nrange = \"10.{a}.{b}.0-10.{a}.{}.255\"\nurl = \"https://office-{o}.example.net/\"\n",
            b + 1,
            b + 3,
        );
    }
    let policy = Policy::from_toml(&toml).expect("the benchmark's policy is valid");
    assert_eq!(policy.sources.len(), 1024);
    policy
}

/// Client addresses: one per office (matched by 2-3 entries) and one unmatched, alternating.
fn clients() -> Vec<IpAddr> {
    (0..OFFICES)
        .flat_map(|o| {
            let (a, b) = (o / 16, (o % 16) * 16);
            [
                IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | a << 16 | b << 8 | 0x2a)),
                IpAddr::V4(Ipv4Addr::from(0xac10_0000 | a << 8 | b)),
            ]
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let policy = policy();
    let clients = clients();
    let mut group = c.benchmark_group("resolve");
    group.throughput(Throughput::Elements(clients.len() as u64));
    let resolver = Resolver::new(&policy);
    for category in Category::ALL {
        group.bench_function(format!("Resolver, 1024 entries, {category}"), |b| {
            b.iter(|| {
                for ip in &clients {
                    black_box(resolver.resolve(*ip, None, category));
                }
            });
        });
    }
    // The readable statement of the rules, scanning the list for each client: the reference.
    group.bench_function("resolve() linear, 1024 entries, components", |b| {
        b.iter(|| {
            for ip in &clients {
                black_box(resolve(&policy, *ip, None, Category::Components));
            }
        });
    });
    group.bench_function("Resolver::new, 1024 entries", |b| {
        b.iter(|| black_box(Resolver::new(&policy)));
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
