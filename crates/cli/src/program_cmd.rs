//! `cascade publish --server URL --category programs NAME VERSION FILE [--hotfix]`: uploads a
//! program build through the admin API (`POST /api/programs/{name}/{version}`), streamed from
//! the file with a progress bar on a terminal and its SHA-256 sent along, so the server refuses
//! a body that arrived otherwise (`docs/operating.md#programs-and-hotfixes`).

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use cascade_client::proto::ProgramUpload;
use cascade_core::Category;
use futures::StreamExt as _;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::io::AsyncReadExt as _;

use crate::repo_cmd::PublishArgs;
use crate::server_cmd::{admin, failed, Conn};
use crate::BadInput;

/// What one upload publishes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Upload {
    pub(crate) name: String,
    pub(crate) version: String,
    pub(crate) file: PathBuf,
}

/// `NAME VERSION FILE` from `--name`/`--version` and one file, or from three positionals.
pub(crate) fn upload_of(args: &PublishArgs) -> Result<Upload, BadInput> {
    if args.category != Category::Programs {
        return Err(BadInput(format!(
            "publish --server uploads programs only (--category programs), not {}",
            args.category
        )));
    }
    match (&args.name, &args.version, args.files.as_slice()) {
        (Some(name), Some(version), [file]) => Ok(Upload {
            name: name.clone(),
            version: version.clone(),
            file: file.clone(),
        }),
        (None, None, [name, version, file]) => Ok(Upload {
            name: name.to_string_lossy().into_owned(),
            version: version.to_string_lossy().into_owned(),
            file: file.clone(),
        }),
        _ => Err(BadInput(
            "publish --server --category programs NAME VERSION FILE (one file per upload)".into(),
        )),
    }
}

/// Runs the upload.
pub fn run_upload(args: &PublishArgs) -> anyhow::Result<()> {
    let up = upload_of(args)?;
    let file_name = up
        .file
        .file_name()
        .and_then(|f| f.to_str())
        .ok_or_else(|| BadInput(format!("FILE: `{}` has no file name", up.file.display())))?
        .to_owned();
    let length = std::fs::metadata(&up.file)
        .map_err(|e| BadInput(format!("FILE: {}: {e}", up.file.display())))?
        .len();
    let sha256 = cascade_repo::fsutil::sha256_file_hex(&up.file)
        .map_err(|e| BadInput(format!("FILE: {}: {e}", up.file.display())))?;
    let conn = Conn {
        server: args.server.clone(),
        ca: args.ca.clone(),
        json: args.json,
    };
    let api = admin(&conn)?;
    let query = ProgramUpload {
        file: file_name,
        hotfix: args.hotfix,
        sha256: Some(sha256),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let bar = ProgressBar::with_draw_target(Some(length), indicatif::ProgressDrawTarget::stderr())
        .with_style(
            ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        )
        .with_message(format!("uploading {}", up.file.display()));
    let what = format!("POST /api/programs/{}/{}", up.name, up.version);
    let view = rt.block_on(async {
        let file = tokio::fs::File::open(&up.file)
            .await
            .map_err(|e| BadInput(format!("FILE: {}: {e}", up.file.display())))?;
        let counted = bar.clone();
        let chunks = futures::stream::unfold(file, |mut f| async move {
            let mut buf = vec![0u8; 1 << 16];
            match f.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok::<_, std::io::Error>(buf), f))
                }
                Err(e) => Some((Err(e), f)),
            }
        })
        .inspect(move |c| {
            if let Ok(c) = c {
                counted.inc(c.len() as u64);
            }
        });
        let body = reqwest::Body::wrap_stream(chunks);
        api.upload_program(&up.name, &up.version, &query, body, length)
            .await
            .map_err(|e| failed(&what, &api, e))
    });
    bar.finish_and_clear();
    let view = view?;
    if args.json {
        let _ = writeln!(
            std::io::stdout().lock(),
            "{}",
            serde_json::to_string_pretty(&view).unwrap_or_default()
        );
    } else {
        println!(
            "published {} ({} bytes, sha256 {}){}",
            view.target,
            view.length,
            view.sha256,
            if view.hotfix { " as a hotfix" } else { "" }
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        publish: PublishArgs,
    }

    fn parse(args: &[&str]) -> PublishArgs {
        Cli::try_parse_from(std::iter::once("publish").chain(args.iter().copied()))
            .map_or_else(|e| panic!("{e}"), |c| c.publish)
    }

    // `NAME VERSION FILE` positionally or with the flags; other categories and shapes are
    // refused with what to type.
    #[test]
    fn name_version_and_file_in_either_shape() {
        let want = Upload {
            name: "agent".into(),
            version: "2.1".into(),
            file: "a.bin".into(),
        };
        let a = parse(&[
            "--server",
            "http://127.0.0.1:1",
            "--category",
            "programs",
            "agent",
            "2.1",
            "a.bin",
        ]);
        assert_eq!(upload_of(&a).unwrap(), want);
        let b = parse(&[
            "--server",
            "http://127.0.0.1:1",
            "--category",
            "programs",
            "--name",
            "agent",
            "--version",
            "2.1",
            "a.bin",
            "--hotfix",
        ]);
        assert_eq!(upload_of(&b).unwrap(), want);
        assert!(b.hotfix);
        let c = parse(&[
            "--server",
            "http://127.0.0.1:1",
            "--category",
            "components",
            "x",
            "1",
            "f",
        ]);
        assert!(upload_of(&c).unwrap_err().0.contains("programs only"));
        let d = parse(&[
            "--server",
            "http://127.0.0.1:1",
            "--category",
            "programs",
            "x",
            "f",
        ]);
        assert!(upload_of(&d).unwrap_err().0.contains("NAME VERSION FILE"));
        assert!(
            Cli::try_parse_from(["publish", "--category", "programs", "--hotfix", "f"]).is_err()
        );
    }
}
