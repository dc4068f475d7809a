//! The demo's rollout acts (`docs/operating.md#rollouts`): a program goes out in rings (office
//! 1 first, then everyone), the first ring healthy and promoted after its soak; then a
//! deliberately bad build (its published file damaged on the server's disk, so it fails its
//! signed hash on every client that tries it) is halted in its first ring (office 2) while
//! every other client keeps the good one.

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use cascade_client::proto::{NewRollout, ProgramUpload, RingSpec, RolloutState, RolloutView};
use cascade_lab::{wait_until, Fleet};

use crate::demo_view::{Client, Group};

/// The program the acts roll out.
const PROGRAM: &str = "tool";

/// What the acts need of the demo.
pub struct Stage<'a> {
    /// The fleet.
    pub fleet: &'a Fleet,
    /// The demo's directory (clients' data under `clients/IP`).
    pub dir: &'a Path,
    /// The clients.
    pub clients: &'a [Client],
    /// How long each wait may take.
    pub timeout: Duration,
}

/// The version of [`PROGRAM`] installed in the data directory of the client at `ip`.
fn installed(dir: &Path, ip: IpAddr) -> Option<String> {
    let link = dir
        .join("clients")
        .join(ip.to_string())
        .join("installed/programs")
        .join(PROGRAM)
        .join("current");
    std::fs::read_link(link)
        .ok()
        .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))
}

impl Stage<'_> {
    async fn upload(&self, version: &str) -> anyhow::Result<()> {
        let bytes = format!("#!/bin/sh\necho {PROGRAM} {version}\n").into_bytes();
        let len = bytes.len() as u64;
        self.fleet
            .api()
            .upload_program(
                PROGRAM,
                version,
                &ProgramUpload {
                    file: "tool.sh".into(),
                    hotfix: false,
                    sha256: None,
                },
                reqwest::Body::from(bytes),
                len,
            )
            .await
            .with_context(|| format!("upload {PROGRAM} {version}"))?;
        Ok(())
    }

    fn of(&self, group: Option<Group>) -> Vec<IpAddr> {
        self.clients
            .iter()
            .filter(|c| group.is_none_or(|g| c.group == g))
            .map(|c| c.ip)
            .collect()
    }

    /// Waits until every client of `ips` has `version`; how long it took, or `None`.
    async fn reach(&self, ips: &[IpAddr], version: &str) -> Option<Duration> {
        let started = Instant::now();
        let done = wait_until(self.timeout, || {
            let all = ips
                .iter()
                .all(|ip| installed(self.dir, *ip).as_deref() == Some(version));
            async move { all }
        })
        .await;
        done.ok().map(|()| started.elapsed())
    }

    fn count(&self, ips: &[IpAddr], version: &str) -> usize {
        ips.iter()
            .filter(|ip| installed(self.dir, **ip).as_deref() == Some(version))
            .count()
    }

    async fn rollout(
        &self,
        id: i64,
        what: &str,
        ok: impl Fn(&RolloutView) -> bool,
    ) -> Option<RolloutView> {
        let api = self.fleet.api();
        wait_until(self.timeout, || async {
            api.rollout(id).await.is_ok_and(|r| ok(&r))
        })
        .await
        .map_err(|_| println!("  rollout {id} never {what}"))
        .ok()?;
        api.rollout(id).await.ok()
    }

    /// Act 4: 1.0 to everyone, then 2.0 in rings; returns whether it went as told.
    pub async fn healthy(&self) -> anyhow::Result<bool> {
        let all = self.of(None);
        let office1 = self.of(Some(Group::Office1));
        self.upload("1.0").await?;
        self.fleet.notify().await?;
        let Some(t) = self.reach(&all, "1.0").await else {
            println!("  not every client installed {PROGRAM} 1.0");
            return Ok(false);
        };
        println!(
            "  {PROGRAM} 1.0 on all {} clients ({:.1} s)",
            all.len(),
            t.as_secs_f64()
        );
        let started = self
            .fleet
            .api()
            .start_rollout(&NewRollout {
                program: PROGRAM.into(),
                version: "2.0".into(),
                previous_version: None,
                rings: vec![
                    RingSpec {
                        name: "office 1".into(),
                        ip_ranges: vec!["127.0.1.0/24".into()],
                        soak_secs: 15,
                        ..RingSpec::default()
                    },
                    RingSpec {
                        name: "everyone".into(),
                        percent: Some(100.0),
                        ..RingSpec::default()
                    },
                ],
            })
            .await?;
        println!(
            "  rollout {}: ring 1 `office 1` (soak 15 s), ring 2 `everyone`; then 2.0 uploaded",
            started.id
        );
        self.upload("2.0").await?;
        let Some(t) = self.reach(&office1, "2.0").await else {
            println!("  office 1 did not install 2.0");
            return Ok(false);
        };
        let rest = all.len() - office1.len();
        let kept = all
            .iter()
            .filter(|ip| !office1.contains(ip))
            .filter(|ip| installed(self.dir, **ip).as_deref() == Some("1.0"))
            .count();
        println!(
            "  ring 1: all {} office 1 clients on 2.0 in {:.1} s after the upload; {kept} of the other {rest} still on 1.0",
            office1.len(),
            t.as_secs_f64()
        );
        let Some(done) = self
            .rollout(started.id, "completed", |r| {
                r.state == RolloutState::Completed
            })
            .await
        else {
            return Ok(false);
        };
        let Some(t) = self.reach(&all, "2.0").await else {
            println!("  not every client installed 2.0 after the promotion");
            return Ok(false);
        };
        println!(
            "  promoted after its soak ({}); all {} clients on 2.0 {:.1} s later",
            done.rings[0].spec.name,
            all.len(),
            t.as_secs_f64()
        );
        Ok(kept == rest)
    }

    /// Act 5: a bad 3.0, office 2 first; halted there, everyone else keeps 2.0.
    pub async fn bad_build(&self) -> anyhow::Result<bool> {
        let all = self.of(None);
        let office2 = self.of(Some(Group::Office2));
        // Published, then its file damaged on the server's disk: it fails its signed hash.
        // No client runs a cycle in between (none is notified: no rollout of 3.0 yet).
        let sh = self
            .fleet
            .site
            .public_dir()
            .join("targets/programs")
            .join(PROGRAM)
            .join("3.0");
        self.upload_damaged(&sh).await?;
        let started = self
            .fleet
            .api()
            .start_rollout(&NewRollout {
                program: PROGRAM.into(),
                version: "3.0".into(),
                previous_version: None,
                rings: vec![
                    RingSpec {
                        name: "office 2".into(),
                        ip_ranges: vec!["127.0.2.0/24".into()],
                        soak_secs: 3600,
                        max_failures: 0,
                        ..RingSpec::default()
                    },
                    RingSpec {
                        name: "everyone".into(),
                        percent: Some(100.0),
                        ..RingSpec::default()
                    },
                ],
            })
            .await?;
        let Some(halted) = self
            .rollout(started.id, "halted", |r| r.state == RolloutState::Halted)
            .await
        else {
            return Ok(false);
        };
        println!(
            "  rollout {}: {}",
            halted.id,
            halted.reason.as_deref().unwrap_or("halted")
        );
        let on2 = self.count(&all, "2.0");
        let on3 = self.count(&all, "3.0");
        println!(
            "  {on2} of {} clients keep 2.0, {on3} have 3.0; failing in office 2: {}",
            all.len(),
            halted.rings[0].failures
        );
        Ok(halted.ring == 1 && on3 == 0 && on2 == all.len() && !office2.is_empty())
    }

    async fn upload_damaged(&self, dir: &Path) -> anyhow::Result<()> {
        self.upload("3.0").await?;
        let mut n = 0;
        for e in std::fs::read_dir(dir).with_context(|| format!("read {}", dir.display()))? {
            let path = e?.path();
            if path.is_file() {
                std::fs::write(&path, b"a bad build")?;
                n += 1;
            }
        }
        println!("  3.0 uploaded; its {n} published file(s) damaged on the server's disk");
        Ok(())
    }
}
