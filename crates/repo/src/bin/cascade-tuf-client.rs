//! `cascade-tuf-client`: the tuf-conformance client-under-test CLI (`CLIENT-CLI.md`) over
//! cascade-repo's TUF workflow (`cascade_repo::tuf`, `docs/architecture.md#trust-model`) and
//! its transport.
//!
//! Trusted metadata lives in `METADATA_DIR/ROLE.json` (role names percent-encoded), written
//! atomically right after each role verified. Targets are saved in `TARGET_DIR` under their
//! percent-encoded name, so no target name can leave that directory; each is streamed into a
//! temporary file, checked against its signed length and every signed hash, and only then
//! renamed into place.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use cascade_repo::fsutil::{write_atomic, Landing};
use cascade_repo::tuf::{
    check_length_and_hashes, quote_role, Limits, MetaStore, MultiHasher, TargetFile, TufError,
    Updater,
};
use cascade_repo::{is_safe_file_name, SourceTransport, TransportLimits};
use clap::{Parser, Subcommand};
use futures::StreamExt;
use tough::Transport as _;
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

/// `METADATA_DIR/ROLE.json`, each written atomically when the workflow trusts it.
struct DirStore {
    dir: PathBuf,
}

impl MetaStore for DirStore {
    fn load(&self, role: &str) -> Option<Vec<u8>> {
        std::fs::read(self.dir.join(format!("{}.json", quote_role(role)))).ok()
    }

    fn store(&mut self, role: &str, raw: &[u8]) -> Result<(), TufError> {
        write_atomic(&self.dir.join(format!("{}.json", quote_role(role))), raw).map_err(|e| {
            TufError::Store {
                role: role.to_owned(),
                reason: e.to_string(),
            }
        })
    }
}

/// The workflow's error with its stable code.
fn tuf_err(e: TufError) -> anyhow::Error {
    let code = e.code();
    anyhow::Error::new(e).context(code)
}

fn transport() -> Result<SourceTransport> {
    let limits = TransportLimits {
        max_response_bytes: 64 << 20,
        ..TransportLimits::default()
    };
    Ok(SourceTransport::new(limits)?)
}

/// Download `target` (as `name`) below `base` into `dir`, unless a copy with the signed
/// length and hashes is already there.
async fn download(
    transport: &SourceTransport,
    consistent: bool,
    (name, target): (&str, &TargetFile),
    base: &str,
    dir: &Path,
) -> Result<()> {
    let file = quote_role(name);
    if !is_safe_file_name(&file) {
        bail!("unsafe file name {file:?}");
    }
    let dest = dir.join(&file);
    if let Ok(have) = std::fs::read(&dest) {
        if check_length_and_hashes(name, &have, Some(target.length), Some(&target.hashes)).is_ok() {
            println!("{name}: cached");
            return Ok(());
        }
    }
    let rel = match target.name_hash().filter(|_| consistent) {
        Some(hash) => match name.rsplit_once('/') {
            Some((d, f)) => format!("{d}/{hash}.{f}"),
            None => format!("{hash}.{name}"),
        },
        None => name.to_owned(),
    };
    let mut base = base.to_owned();
    if !base.ends_with('/') {
        base.push('/');
    }
    let url = Url::parse(&format!("{base}{rel}"))?;
    if !url.as_str().starts_with(&base) {
        bail!("target URL {url} leaves the target base URL");
    }
    let mut hasher = MultiHasher::new(name, &target.hashes).map_err(tuf_err)?;
    let mut landing = Landing::start(&dest, ".partial-")?;
    let mut stream = transport.fetch(url.clone()).await?;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if landing.len().saturating_add(chunk.len() as u64) > target.length {
            landing.discard();
            return Err(tuf_err(TufError::TooLarge {
                file: name.to_owned(),
                limit: target.length,
            }));
        }
        hasher.update(&chunk);
        landing.write(&chunk)?;
    }
    if let Err(e) = hasher.finish(Some(target.length)) {
        landing.discard();
        return Err(tuf_err(e));
    }
    landing.finish(None)?;
    println!("{name}: downloaded");
    Ok(())
}

async fn run(cli: Cli) -> Result<()> {
    if let Cmd::Init { trusted_root } = &cli.cmd {
        std::fs::create_dir_all(&cli.metadata_dir)?;
        let bytes = std::fs::read(trusted_root)?;
        let _: tough::schema::Signed<tough::schema::Root> =
            serde_json::from_slice(&bytes).context("not a root")?;
        write_atomic(&cli.metadata_dir.join("root.json"), &bytes)?;
        return Ok(());
    }
    let url = cli.metadata_url.context("--metadata-url is required")?;
    let root =
        std::fs::read(cli.metadata_dir.join("root.json")).context("no trusted root: run init")?;
    let transport = transport()?;
    let mut store = DirStore {
        dir: cli.metadata_dir.clone(),
    };
    let now = jiff::Timestamp::now();
    let mut updater = Updater::new(&root, now, &transport, &url, &mut store, Limits::default())
        .map_err(tuf_err)?;
    updater.refresh().await.map_err(tuf_err)?;
    if matches!(cli.cmd, Cmd::Refresh) {
        return Ok(());
    }
    let base = cli
        .target_base_url
        .context("--target-base-url is required")?;
    let dir = cli.target_dir.context("--target-dir is required")?;
    for name in &cli.target_names {
        let target = updater
            .find_target(name)
            .await
            .map_err(tuf_err)?
            .with_context(|| {
                format!("target {name:?} is not listed by any role the search may visit")
            })?;
        let consistent = updater.trusted().root().meta.consistent_snapshot;
        download(&transport, consistent, (name, &target), &base, &dir).await?;
    }
    Ok(())
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
