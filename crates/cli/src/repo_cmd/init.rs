//! `cascade repo init`: creates a repository, its online keys beside it and its offline
//! (root, targets) keys in a directory to move off the machine.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use cascade_repo::InitOptions;

use super::{key_error, passphrase};
use crate::BadInput;

/// Run `cascade repo init`: refuses to leave the offline keys inside the repository directory
/// unless `--keep-offline-keys-here` says so.
pub(super) fn run_init(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    keys: Option<PathBuf>,
    keep_here: bool,
    root_keys: usize,
    root_threshold: usize,
    passphrase_file: Option<&Path>,
) -> Result<()> {
    let keys =
        match (keys, keep_here) {
            (_, true) => dir.join("offline-keys"),
            (Some(k), false) => {
                let (abs_dir, abs_keys) = (absolute(dir)?, absolute(&k)?);
                if abs_keys.starts_with(&abs_dir) {
                    return Err(BadInput(format!(
                    "--offline-keys {} is inside the repository directory {}: give a directory \
                     outside it (removable media), or --keep-offline-keys-here",
                    k.display(),
                    dir.display()
                ))
                    .into());
                }
                k
            }
            (None, false) => return Err(BadInput(
                "give --offline-keys DIR (a directory to move off this machine, e.g. removable \
                 media) for the root and targets keys, or --keep-offline-keys-here"
                    .to_owned(),
            )
            .into()),
        };
    let opts = InitOptions {
        passphrase: passphrase(passphrase_file)?,
        root_keys,
        root_threshold,
        ..InitOptions::new(&keys)
    };
    let encrypted = opts.passphrase.is_some();
    let p = rt
        .block_on(cascade_repo::init_with(
            dir,
            &opts,
            cascade_repo::Timestamp::now(),
        ))
        .map_err(|e| {
            let err = key_error(&format!("initialising {}", dir.display()), &e);
            if let cascade_repo::PublishError::BadThreshold { .. } = e {
                BadInput(format!("{err:#}")).into()
            } else {
                err
            }
        })?;
    println!("repository created in {}", dir.display());
    println!("  serve:        {}", p.public_dir().display());
    println!(
        "  trusted root: {}",
        p.public_dir().join("metadata/1.root.json").display()
    );
    println!("  root keys:    {root_keys}, of which {root_threshold} must sign a new root");
    println!("  offline keys: {}", keys.display());
    if keep_here {
        println!("  WARNING: the offline root and targets keys are on this machine (--keep-offline-keys-here)");
    } else {
        println!(
            "  MOVE {} OFF THIS MACHINE now (removable media, one root key per key holder);",
            keys.display()
        );
        println!("  publishing and renewing need it back (--offline-keys).");
    }
    if !encrypted {
        eprintln!(
            "warning: the key files are not encrypted: give --key-passphrase-file or \
             CASCADE_KEY_PASSPHRASE (docs/operating.md#keys-and-their-ceremony)"
        );
    }
    Ok(())
}

fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("resolving {}", p.display()))
}
