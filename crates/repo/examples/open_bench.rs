//! The client's speed per update cycle: `open_bench [NAMES] [CYCLES]`.
//!
//! Publishes NAMES contents (one small file each) into a temporary repository served on
//! 127.0.0.1 by the kit's server, then times CYCLES `RepoClient::open` calls: "warm" with one
//! client whose trust state persists (the steady state of an agent: the timestamp is
//! unchanged), and "cold" with a fresh trust state each cycle (a first update). Prints the
//! mean and median milliseconds per cycle of each, and the HTTP requests per warm cycle.

use std::time::{Duration, Instant};

use cascade_core::Category;
use cascade_repo::{Expiries, PublishOptions, RepoClient, RepoSource, TransportLimits};

fn stats(mut d: Vec<Duration>) -> (f64, f64) {
    d.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let n = d.len().max(1);
    let mean =
        d.iter().copied().map(ms).sum::<f64>() / u32::try_from(n).map_or(f64::MAX, f64::from);
    let median = d.get(n / 2).copied().map_or(0.0, ms);
    (mean, median)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let names: usize = args.next().map_or(Ok(50), |a| a.parse())?;
    let cycles: usize = args.next().map_or(Ok(200), |a| a.parse())?;
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("repo");
    let now = jiff::Timestamp::now();
    let publisher =
        cascade_repo::init(&dir, &tmp.path().join("keys"), Expiries::default(), now).await?;
    for i in 0..names {
        let src = tmp.path().join("src").join(i.to_string());
        std::fs::create_dir_all(&src)?;
        std::fs::write(src.join("data.bin"), format!("content {i}"))?;
        publisher
            .publish(
                Category::Components,
                &format!("name{i}"),
                "1",
                &[src.join("data.bin")],
                PublishOptions::default(),
                now,
            )
            .await?;
    }
    let root = std::fs::read(publisher.public_dir().join("metadata/1.root.json"))?;
    let server =
        cascade_testkit::HostileServer::start(&publisher.public_dir(), "127.0.0.1:0".parse()?)
            .await?;
    let source = RepoSource::new(server.url());

    let warm_client = RepoClient::new(
        root.clone(),
        &tmp.path().join("warm"),
        TransportLimits::default(),
    )?;
    warm_client.open(&source).await?;
    let asked_before = server.requests().len();
    let mut warm = Vec::with_capacity(cycles);
    for _ in 0..cycles {
        let t = Instant::now();
        let loaded = warm_client.open(&source).await?;
        warm.push(t.elapsed());
        assert_eq!(loaded.files().len(), names);
    }
    let warm_requests = server.requests().len() - asked_before;
    let mut cold = Vec::with_capacity(cycles);
    for i in 0..cycles {
        let state = tmp.path().join(format!("cold{i}"));
        let t = Instant::now();
        let client = RepoClient::new(root.clone(), &state, TransportLimits::default())?;
        client.open(&source).await?;
        cold.push(t.elapsed());
    }
    let (wm, wmed) = stats(warm);
    let (cm, cmed) = stats(cold);
    println!("names={names} cycles={cycles}");
    println!(
        "warm open (trust state kept): mean {wm:.3} ms, median {wmed:.3} ms, {:.1} requests",
        f64::from(u32::try_from(warm_requests).unwrap_or(u32::MAX))
            / f64::from(u32::try_from(cycles.max(1)).unwrap_or(u32::MAX))
    );
    println!("cold open (fresh trust state): mean {cm:.3} ms, median {cmed:.3} ms");
    Ok(())
}
