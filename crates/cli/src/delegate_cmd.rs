//! Delegated program builds (`docs/operating.md#delegated-program-builds`):
//! `cascade repo team-key` makes a build team's key, `cascade repo delegate` (with the
//! repository's targets key, or `--server URL`: the server signs with the one it holds)
//! delegates `programs/...` paths to it, and
//! `cascade publish --server URL --delegated-key KEY --role ROLE NAME VERSION FILE` signs the
//! role's next version with the team's key on the team's machine and sends the build and the
//! signed role to the server, which checks and publishes them without ever holding the key.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use cascade_repo::{
    generate_team_key, read_public_key, sign_delegated, DelegatedBuild, Delegation, Passphrase,
    Publisher,
};

use cascade_client::proto::NewDelegation;

use crate::repo_cmd::PublishArgs;
use crate::server_cmd::{admin, failed, Conn};
use crate::BadInput;

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn passphrase(file: Option<&Path>) -> Result<Option<Passphrase>> {
    Passphrase::from_file_or_env(file).map_err(|e| BadInput(format!("{e} [{}]", e.code())).into())
}

/// `cascade repo team-key --out FILE`: a new team key in FILE and its public key's JSON in
/// `FILE.pub.json` (what `cascade repo delegate --key` takes).
///
/// # Errors
/// The file exists, or it cannot be written.
pub fn run_team_key(out: &Path, passphrase_file: Option<&Path>) -> Result<()> {
    let pass = passphrase(passphrase_file)?;
    if pass.is_none() {
        eprintln!(
            "warning: the key file is not encrypted: give --key-passphrase-file or \
             CASCADE_KEY_PASSPHRASE (docs/operating.md#keys-and-their-ceremony)"
        );
    }
    let public = generate_team_key(out, pass.as_ref())
        .map_err(|e| anyhow::anyhow!("{}: {e} [{}]", out.display(), e.code()))?;
    println!(
        "team key {} (keep it with the build team, never on the server); public key {}",
        out.display(),
        public.display()
    );
    Ok(())
}

/// Where `cascade repo delegate` delegates.
#[derive(Debug)]
pub enum DelegateIn {
    /// A repository directory, signed here with its targets key.
    Repo {
        /// The repository directory.
        repo: PathBuf,
        /// Its offline keys directory (targets key).
        keys_dir: PathBuf,
        /// The passphrase file of encrypted key files.
        passphrase_file: Option<PathBuf>,
    },
    /// A server's own site repository, through its API (`PUT /api/delegations/{role}`): the
    /// server signs, as the one writer of its replicas.
    Server(Conn),
}

/// What `cascade repo delegate` is given.
#[derive(Debug)]
pub struct DelegateArgs<'a> {
    /// Where to delegate.
    pub target: DelegateIn,
    /// The delegated role.
    pub role: &'a str,
    /// The team's public keys.
    pub key_files: &'a [PathBuf],
    /// How many must sign.
    pub threshold: u64,
    /// The delegated path patterns.
    pub paths: &'a [String],
}

/// `cascade repo delegate`: the top-level targets role (signed with the targets key) delegates
/// `paths` to `role`, signed by `threshold` of the keys in `key_files`; in a repository
/// directory here, or in a server's site repository through its API.
///
/// # Errors
/// A bad delegation (bad input), unreadable keys, signing and I/O errors, the server's refusal.
pub fn run_delegate(a: &DelegateArgs<'_>) -> Result<()> {
    let keys = a
        .key_files
        .iter()
        .enumerate()
        .map(|(n, f)| {
            read_public_key(f, None)
                .map_err(|e| BadInput(format!("--key {} ({}): {e}", n + 1, f.display())))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let d = Delegation {
        role: a.role.to_owned(),
        keys,
        threshold: a.threshold,
        paths: a.paths.to_vec(),
    };
    d.check()
        .map_err(|e| BadInput(format!("{e} [{}]", e.code())))?;
    match &a.target {
        DelegateIn::Repo {
            repo,
            keys_dir,
            passphrase_file,
        } => {
            let pass = passphrase(passphrase_file.as_deref())?;
            let p = Publisher::open(repo, keys_dir).with_passphrase(pass);
            runtime()?
                .block_on(p.delegate(&d, cascade_repo::Timestamp::now()))
                .map_err(|e| {
                    anyhow::anyhow!("delegating in {}: {e} [{}]", repo.display(), e.code())
                })?;
        }
        DelegateIn::Server(conn) => {
            let api = admin(conn)?;
            let body = NewDelegation {
                keys: d
                    .keys
                    .iter()
                    .map(serde_json::to_value)
                    .collect::<Result<_, _>>()?,
                threshold: a.threshold,
                paths: a.paths.to_vec(),
            };
            let what = format!("PUT /api/delegations/{}", a.role);
            let done = runtime()?
                .block_on(api.delegate(a.role, &body))
                .map_err(|e| failed(&what, &api, e))?;
            if conn.json {
                println!("{}", serde_json::to_string_pretty(&done)?);
                return Ok(());
            }
        }
    }
    println!(
        "targets now delegate {} to role {} ({} of {} key(s))",
        a.paths.join(", "),
        a.role,
        a.threshold,
        a.key_files.len()
    );
    Ok(())
}

/// `signed.meta[name].version` of metadata `bytes`.
fn listed_version(bytes: &[u8], name: &str) -> Option<u64> {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()?
        .get("signed")?
        .get("meta")?
        .get(name)?
        .get("version")?
        .as_u64()
}

/// `cascade publish --server URL --delegated-key KEY --role ROLE NAME VERSION FILE`.
///
/// # Errors
/// Bad input, an unreachable server, the server's refusal (nothing is published then).
pub fn run_delegated_upload(args: &PublishArgs, key: &Path) -> Result<()> {
    let role = args
        .role
        .as_deref()
        .ok_or_else(|| BadInput("--delegated-key needs --role ROLE (the delegated role)".into()))?;
    let up = crate::program_cmd::upload_of(args)?;
    let pass = passphrase(args.keys.key_passphrase_file.as_deref())?;
    let conn = Conn {
        server: args.server.clone(),
        ca: args.ca.clone(),
        json: args.json,
    };
    let api = admin(&conn)?;
    let bytes = std::fs::read(&up.file)
        .map_err(|e| BadInput(format!("FILE: {}: {e}", up.file.display())))?;
    let rt = runtime()?;
    let published = rt.block_on(async {
        // The role as served now, which the new version extends (it must carry this key's
        // own signature: `sign_delegated` checks).
        let md = "repo/site/metadata";
        let what = format!("GET /{md}/");
        let get = |file: String| {
            let api = &api;
            let what = &what;
            async move {
                api.client()
                    .repo_file(&format!("{md}/{file}"))
                    .await
                    .map_err(|e| failed(what, api, e))
            }
        };
        let ts = get("timestamp.json".into()).await?;
        let snapshot_version = listed_version(&ts, "snapshot.json")
            .ok_or_else(|| anyhow::anyhow!("the server's timestamp.json lists no snapshot"))?;
        let snapshot = get(format!("{snapshot_version}.snapshot.json")).await?;
        let previous = match listed_version(&snapshot, &format!("{role}.json")) {
            Some(v) => {
                Some(get(format!("{v}.{}.json", cascade_repo::tuf::quote_role(role))).await?)
            }
            None => None,
        };
        let build = DelegatedBuild {
            name: &up.name,
            version: &up.version,
            file: &up.file,
            hotfix: args.hotfix,
        };
        let now = cascade_repo::Timestamp::now().as_second();
        let expires = cascade_repo::Timestamp::from_second(now + args.role_days * 86_400)
            .map_err(|e| BadInput(format!("--role-days: {e}")))?;
        let signed = sign_delegated(
            role,
            previous.as_deref(),
            build,
            key,
            pass.as_ref(),
            expires,
        )
        .await
        .map_err(|e| BadInput(format!("signing role {role}: {e} [{}]", e.code())))?;
        let what = format!("PUT /api/delegations/{role}/files/{}", signed.sha256);
        let length = bytes.len() as u64;
        api.stage_delegated_file(role, &signed.sha256, reqwest::Body::from(bytes), length)
            .await
            .map_err(|e| failed(&what, &api, e))?;
        let what = format!("POST /api/delegations/{role}");
        let done = api
            .publish_delegated(role, signed.metadata.clone())
            .await
            .map_err(|e| failed(&what, &api, e))?;
        anyhow::Ok((signed, done))
    })?;
    let (signed, done) = published;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&done)?);
    } else {
        println!(
            "published {} ({} bytes, sha256 {}) signed by role {role} version {}{}",
            signed.target,
            signed.length,
            signed.sha256,
            done.version,
            if args.hotfix { " as a hotfix" } else { "" }
        );
    }
    Ok(())
}
