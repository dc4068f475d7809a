//! The running system ([`World`]): the signed upstream, the server, the relays on
//! 127.0.0.2…, the clients' addresses and directories, the payload and the policy.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result};
use cascade_bench::procs::free_port;
use cascade_core::Category;
use cascade_testkit::{start_fleet, wait_until, AgentHandle, Fleet, Upstream};

use crate::{Args, ITEM};

/// The running system.
pub(crate) struct World {
    pub(crate) work: PathBuf,
    pub(crate) upstream: Upstream,
    pub(crate) root: PathBuf,
    pub(crate) fleet: Fleet,
    pub(crate) relays: Vec<(SocketAddr, Option<AgentHandle>)>,
    pub(crate) http: reqwest::Client,
    pub(crate) args: Args,
}

pub(crate) fn relay_ip(i: usize) -> Result<Ipv4Addr> {
    let last = u8::try_from(i + 2).context("too many relays")?;
    Ok(Ipv4Addr::new(127, 0, 0, last))
}

pub(crate) fn office_of(k: usize, relays: usize) -> usize {
    k % relays
}

/// Client `k`: office `k % M` owns 127.(10+office).0.0/16; its j-th client is
/// 127.(10+office).(j / 250).(j % 250 + 1).
pub(crate) fn client_ip(k: usize, relays: usize) -> Result<IpAddr> {
    let office = u8::try_from(10 + office_of(k, relays)).context("too many relays")?;
    let j = k / relays;
    let hi = u8::try_from(j / 250).context("too many clients per office (max 64000)")?;
    let lo = u8::try_from(j % 250 + 1).context("client address")?;
    Ok(IpAddr::V4(Ipv4Addr::new(127, office, hi, lo)))
}

/// Deterministic content of `kib` KiB; version `v` rewrites about 1 % of it.
pub(crate) fn payload(kib: usize, v: u32) -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut out: Vec<u8> = (0..kib * 1024).map(|_| next().to_le_bytes()[0]).collect();
    let len = out.len().max(1);
    for round in 1..v {
        for _ in 0..len / 100 {
            let r = next();
            let at = usize::try_from(r % 0x7FFF_FFFF).unwrap_or(0) % len;
            out[at] = (r >> 8).to_le_bytes()[0] ^ round.to_le_bytes()[0];
        }
    }
    out
}

pub(crate) fn policy(w: &World) -> Result<String> {
    let up = w.upstream.url().context("upstream URL")?;
    let mut s = format!("mode = \"customized\"\nactiveupdate_url = \"{up}\"\n");
    for (addr, _) in &w.relays {
        let _ = write!(s, "[[agent]]\naddress = \"{addr}\"\n");
    }
    for (i, (addr, _)) in w.relays.iter().enumerate() {
        let _ = write!(
            s,
            "[[sources]]\nrange = \"127.{}.0.0/16\"\nagent = \"{addr}\"\n",
            10 + i
        );
    }
    Ok(s)
}

pub(crate) fn client_dir(w: &World, k: usize) -> PathBuf {
    w.work.join("clients").join(k.to_string())
}

pub(crate) fn installed(dir: &Path) -> Option<String> {
    std::fs::read_link(dir.join("installed/components").join(ITEM).join("current"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

pub(crate) async fn start(args: Args, work: PathBuf) -> Result<World> {
    let upstream = Upstream::create(
        &work.join("upstream"),
        Some(SocketAddr::from(([127, 0, 0, 1], 0))),
    )
    .await?;
    let body = payload(args.payload_kib, 1);
    upstream
        .publish(Category::Components, ITEM, "1", &[("patterns.db", &body)])
        .await?;
    let root = work.join("upstream-root.json");
    upstream.write_root(&root)?;
    let fleet = start_fleet(
        &work.join("server"),
        SocketAddr::from(([127, 0, 0, 1], 0)),
        Some(root.clone()),
    )
    .await?;
    let mut relays = Vec::new();
    for i in 0..args.relays {
        relays.push((free_port(relay_ip(i)?)?, None));
    }
    let http = cascade_client::http_builder(fleet.ca_pem())?.build()?;
    let mut w = World {
        work,
        upstream,
        root,
        fleet,
        relays,
        http,
        args,
    };
    w.fleet.apply_policy(&policy(&w)?).await.context("policy")?;
    w.fleet.mirror().await.context("first mirror")?;
    for i in 0..w.relays.len() {
        let addr = w.relays[i].0;
        let cfg = w.fleet.agent_config(
            &w.work.join("relays").join(i.to_string()),
            IpAddr::V4(relay_ip(i)?),
            Some(addr),
            Some(&w.root),
        );
        w.relays[i].1 = Some(AgentHandle::spawn(cfg));
    }
    for i in 0..w.relays.len() {
        let addr = w.relays[i].0;
        let dir = w.work.join("relays").join(i.to_string());
        wait_until(Duration::from_secs(60), || async {
            std::net::TcpStream::connect(addr).is_ok() && installed(&dir).is_some()
        })
        .await
        .with_context(|| format!("relay {addr} did not start"))?;
    }
    Ok(w)
}
