//! The compiled [`Resolver`] gives exactly the plan `resolve()` gives (steps, reasons and what
//! was skipped), for random policies and client addresses: overlapping and nested ranges of
//! all three forms, both families and IPv4-mapped IPv6 clients, agents with partial
//! capabilities, entries naming agents, both modes and every fallback setting.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::net::IpAddr;

use cascade_core::{resolve, Category, Policy, Resolver};
use proptest::prelude::*;

/// A range over a small space (`10.0.0.0-10.0.3.255` and `fd00::/118`) so that entries overlap.
fn range() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u32..1024).prop_map(|n| format!("10.0.{}.{}", n >> 8, n & 255)),
        (0u32..1024, 22u8..=32).prop_map(|(n, len)| {
            let net = (10u32 << 24 | n) & (u32::MAX << (32 - len));
            format!("{}/{len}", std::net::Ipv4Addr::from(net))
        }),
        (0u32..1024, 0u32..1024).prop_map(|(a, b)| {
            let (lo, hi) = (a.min(b), a.max(b));
            format!(
                "10.0.{}.{}-10.0.{}.{}",
                lo >> 8,
                lo & 255,
                hi >> 8,
                hi & 255
            )
        }),
        (0u16..1024, 0u16..1024).prop_map(|(a, b)| format!(
            "fd00::{:x}-fd00::{:x}",
            a.min(b),
            a.max(b)
        )),
    ]
}

fn client() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        (0u32..1100).prop_map(|n| format!("10.0.{}.{}", n >> 8, n & 255).parse().unwrap()),
        (0u32..1100).prop_map(|n| format!("::ffff:10.0.{}.{}", n >> 8, n & 255)
            .parse()
            .unwrap()),
        (0u16..1100).prop_map(|n| format!("fd00::{n:x}").parse().unwrap()),
    ]
}

/// Entry: a range and either an agent (by number, of those registered) or a URL.
fn policy() -> impl Strategy<Value = Policy> {
    let agents = prop::collection::vec(prop::collection::btree_set(0usize..3, 0..=3), 0..4);
    let entries = prop::collection::vec((range(), any::<bool>(), 0usize..4, 0usize..3), 0..40);
    let flags = (
        any::<bool>(),
        any::<bool>(),
        any::<[bool; 3]>(),
        0usize..3,
        any::<bool>(),
    );
    (agents, entries, flags).prop_map(|(agents, entries, (custom, upstream, fb, auf, priv_))| {
        let cats = ["components", "domain-settings", "programs"];
        let mut t = format!(
            "mode = \"{}\"\nactiveupdate_fallback = \"{}\"\n",
            if custom { "customized" } else { "standard" },
            ["any", "all", "never"][auf],
        );
        if upstream {
            t.push_str("activeupdate_url = \"https://up.example/\"\n");
        }
        let _ = write!(
            t,
            "[fallback]\ncomponents_from_server = {}\ndomain_settings_from_server = {}\nprograms_from_server = {}\n[privileges]\ndownload_from_activeupdate = {priv_}\n",
            fb[0], fb[1], fb[2]
        );
        for (i, caps) in agents.iter().enumerate() {
            let names: Vec<String> = caps.iter().map(|c| format!("\"{}\"", cats[*c])).collect();
            let _ = write!(t, "[[agent]]\naddress = \"10.0.{i}.5:8443\"\ncapabilities = [{}]\n", names.join(", "));
        }
        for (range, to_agent, agent, mirror) in entries {
            let _ = write!(t, "[[sources]]\nrange = \"{range}\"\n");
            if to_agent && !agents.is_empty() {
                let _ = writeln!(t, "agent = \"10.0.{}.5:8443\"", agent % agents.len());
            } else if mirror == 0 && upstream {
                t.push_str("url = \"https://up.example/\"\n");
            } else {
                let _ = writeln!(t, "url = \"https://m{mirror}.example/\"");
            }
        }
        Policy::from_toml(&t).unwrap_or_else(|e| panic!("{e}\n{t}"))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]
    #[test]
    fn resolver_matches_resolve(policy in policy(), clients in prop::collection::vec(client(), 1..20)) {
        let resolver = Resolver::new(&policy);
        for ip in clients {
            for category in Category::ALL {
                prop_assert_eq!(resolver.resolve(ip, None, category), resolve(&policy, ip, None, category));
            }
        }
    }
}
