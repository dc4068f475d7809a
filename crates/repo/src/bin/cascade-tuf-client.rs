//! `cascade-tuf-client`: the tuf-conformance client-under-test CLI (`CLIENT-CLI.md`) over
//! cascade-repo's transport and verified saving, with `tough` doing the TUF client workflow.
//!
//! Trusted metadata is mirrored byte-for-byte into `METADATA_DIR/ROLE.json`; tough's own trust
//! state lives in `METADATA_DIR/tough-state/`. Targets are saved in `TARGET_DIR` under their
//! percent-encoded name, so no target name can leave that directory.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use cascade_repo::mirror::RecordingTransport;
use cascade_repo::{is_safe_file_name, save_verified};
use cascade_repo::{SourceTransport, TransportLimits};
use clap::{Parser, Subcommand};
use tough::schema::{Signed, Targets};
use tough::{Repository, RepositoryLoader, TargetName};
use url::Url;

#[derive(Parser)]
#[command(about = "TUF conformance client for cascade-repo")]
struct Cli {
    #[arg(long)]
    metadata_dir: PathBuf,
    #[arg(long)]
    metadata_url: Option<Url>,
    #[arg(long = "target-name")]
    target_names: Vec<String>,
    #[arg(long)]
    target_base_url: Option<String>,
    #[arg(long)]
    target_dir: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Trust the given root.
    Init { trusted_root: PathBuf },
    /// Update the top-level metadata.
    Refresh,
    /// Refresh, then download targets.
    Download,
}

/// Percent-encode everything but `[A-Za-z0-9._~-]`, and the dots of `.`/`..`.
fn encode(name: &str) -> String {
    let mut out = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'~' | b'.') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    if out.bytes().all(|b| b == b'.') {
        out = out.replace('.', "%2E");
    }
    out
}

fn version_of(bytes: &[u8]) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    v.get("signed")?.get("version")?.as_u64()
}

struct Client {
    metadata_dir: PathBuf,
    state_dir: PathBuf,
    metadata_url: Url,
    recording: RecordingTransport<SourceTransport>,
}

impl Client {
    fn new(metadata_dir: &Path, metadata_url: Url) -> Result<Self> {
        let state_dir = metadata_dir.join("tough-state");
        std::fs::create_dir_all(&state_dir)?;
        // Fake clocks in the suite move back and forth between runs; tough's stepped-back clock
        // guard would refuse every run after a jump forward, so it is reset each run.
        let _ = std::fs::remove_file(state_dir.join("latest_known_time.json"));
        let limits = TransportLimits {
            max_response_bytes: 64 << 20,
            ..TransportLimits::default()
        };
        Ok(Self {
            metadata_dir: metadata_dir.to_owned(),
            state_dir,
            metadata_url,
            recording: RecordingTransport::new(SourceTransport::new(limits)?),
        })
    }

    async fn refresh(&self) -> Result<Repository> {
        let root = std::fs::read(self.metadata_dir.join("root.json"))
            .context("no trusted root: run init")?;
        let result =
            RepositoryLoader::new(&root, self.metadata_url.clone(), self.metadata_url.clone())
                .transport(self.recording.clone())
                .datastore(self.state_dir.clone())
                .load()
                .await;
        self.mirror_trusted(result.as_ref().ok())?;
        result.map_err(|e| {
            anyhow::anyhow!(
                "refresh failed ({}): {e}",
                cascade_repo::classify(&e).code()
            )
        })
    }

    /// Copy what tough now trusts into `METADATA_DIR/ROLE.json`, byte-for-byte where possible.
    fn mirror_trusted(&self, repo: Option<&Repository>) -> Result<()> {
        let seen = self.recording.bodies();
        let base = self.metadata_url.as_str().trim_end_matches('/').to_owned();
        for role in ["root", "timestamp", "snapshot", "targets"] {
            let dest = self.metadata_dir.join(format!("{role}.json"));
            let Ok(state) = std::fs::read(self.state_dir.join(format!("{role}.json"))) else {
                if role != "root" {
                    let _ = std::fs::remove_file(&dest);
                }
                continue;
            };
            let Some(v) = version_of(&state) else {
                continue;
            };
            let candidates = [
                format!("{base}/{v}.{role}.json"),
                format!("{base}/{role}.json"),
            ];
            let raw = candidates
                .iter()
                .filter_map(|u| seen.get(u))
                .find(|b| version_of(b) == Some(v));
            let current = std::fs::read(&dest).ok();
            match raw {
                Some(bytes) => cascade_repo::fsutil::write_atomic(&dest, bytes)?,
                None if current.as_deref().and_then(version_of) != Some(v) => {
                    cascade_repo::fsutil::write_atomic(&dest, &state)?;
                }
                None => {}
            }
        }
        if let Some(repo) = repo {
            self.mirror_delegated(&repo.targets().signed, &seen, &base)?;
        }
        Ok(())
    }

    fn mirror_delegated(
        &self,
        targets: &Targets,
        seen: &HashMap<String, Vec<u8>>,
        base: &str,
    ) -> Result<()> {
        let Some(delegations) = &targets.delegations else {
            return Ok(());
        };
        for role in &delegations.roles {
            let Some(signed) = &role.targets else {
                continue;
            };
            let v = signed.signed.version.get();
            let enc = encode(&role.name);
            let found = [
                format!("{base}/{v}.{enc}.json"),
                format!("{base}/{enc}.json"),
            ]
            .iter()
            .filter_map(|u| seen.get(u))
            .find(|b| version_of(b) == Some(v))
            .cloned();
            let bytes = match found {
                Some(b) => b,
                None => serde_json::to_vec(signed)?,
            };
            cascade_repo::fsutil::write_atomic(
                &self.metadata_dir.join(format!("{enc}.json")),
                &bytes,
            )?;
            self.mirror_delegated(&signed.signed, seen, base)?;
        }
        Ok(())
    }

    async fn download(&self, repo: &Repository, name: &str, base: &str, dir: &Path) -> Result<()> {
        let tn = TargetName::new(name).with_context(|| format!("unsafe target name {name:?}"))?;
        let target = find_target(&repo.targets().signed, &tn)?;
        let sha = &target.hashes.sha256;
        let file = encode(name);
        if !is_safe_file_name(&file) {
            bail!("unsafe file name {file:?}");
        }
        if let Ok(have) = std::fs::read(dir.join(&file)) {
            let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &have);
            if have.len() as u64 == target.length && digest.as_ref() == &**sha {
                println!("{name}: cached");
                return Ok(());
            }
        }
        let rel = if repo.root().signed.consistent_snapshot {
            match name.rsplit_once('/') {
                Some((d, f)) => format!("{d}/{}.{f}", hex::encode(&**sha)),
                None => format!("{}.{name}", hex::encode(&**sha)),
            }
        } else {
            name.to_owned()
        };
        let mut base = base.to_owned();
        if !base.ends_with('/') {
            base.push('/');
        }
        let url = Url::parse(&format!("{base}{rel}"))?;
        if !url.as_str().starts_with(&base) {
            bail!("target URL {url} leaves the target base URL");
        }
        save_verified(self.recording.inner(), url, target.length, sha, dir, &file).await?;
        println!("{name}: downloaded");
        Ok(())
    }
}

fn find_target<'a>(targets: &'a Targets, name: &TargetName) -> Result<&'a tough::schema::Target> {
    targets
        .find_target(name, false)
        .map_err(|e| anyhow::anyhow!("target {:?} not found: {e}", name.raw()))
}

async fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Init { trusted_root } => {
            std::fs::create_dir_all(&cli.metadata_dir)?;
            let bytes = std::fs::read(&trusted_root)?;
            let _: Signed<tough::schema::Root> =
                serde_json::from_slice(&bytes).context("not a root")?;
            cascade_repo::fsutil::write_atomic(&cli.metadata_dir.join("root.json"), &bytes)?;
            Ok(())
        }
        Cmd::Refresh => {
            let url = cli.metadata_url.context("--metadata-url is required")?;
            Client::new(&cli.metadata_dir, url)?
                .refresh()
                .await
                .map(|_| ())
        }
        Cmd::Download => {
            let url = cli.metadata_url.context("--metadata-url is required")?;
            let base = cli
                .target_base_url
                .context("--target-base-url is required")?;
            let dir = cli.target_dir.context("--target-dir is required")?;
            let client = Client::new(&cli.metadata_dir, url)?;
            let repo = client.refresh().await?;
            for name in &cli.target_names {
                client.download(&repo, name, &base, &dir).await?;
            }
            Ok(())
        }
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cascade-tuf-client: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cascade-tuf-client: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
