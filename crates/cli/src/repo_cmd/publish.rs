//! `cascade publish`: adds a version to a repository with its keys, or hands the build to a
//! server (`crate::program_cmd`) or signs it with a delegated key (`crate::delegate_cmd`).

use anyhow::Result;
use cascade_repo::PublishOptions;

use super::{open, runtime, PublishArgs};

/// Run `cascade publish`.
///
/// # Errors
/// Any publishing error; the served repository is then unchanged.
pub fn run_publish(args: &PublishArgs) -> Result<()> {
    if let Some(key) = &args.delegated_key {
        return crate::delegate_cmd::run_delegated_upload(args, key);
    }
    let Some(repo) = args.repo.clone() else {
        return crate::program_cmd::run_upload(args);
    };
    let (Some(name), Some(version)) = (args.name.clone(), args.version.clone()) else {
        return Err(crate::BadInput(
            "publish --repo needs --name NAME and --version VERSION".into(),
        )
        .into());
    };
    let rt = runtime()?;
    let p = open(
        &repo,
        args.keys.keys.clone(),
        args.keys.key_passphrase_file.as_deref(),
    )?;
    let opts = PublishOptions {
        delta_depth: args.delta_depth,
        ..PublishOptions::default()
    };
    let added = rt
        .block_on(p.publish(
            args.category,
            &name,
            &version,
            &args.files,
            opts,
            cascade_repo::Timestamp::now(),
        ))
        .map_err(|e| anyhow::anyhow!("{e} [{}]", e.code()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&added)?);
    } else {
        println!("published {}/{name}/{version}", args.category);
        for t in added {
            match t.delta_from {
                Some(from) => println!("  {} ({} bytes, delta from {from})", t.name, t.length),
                None => println!("  {} ({} bytes)", t.name, t.length),
            }
        }
    }
    Ok(())
}
