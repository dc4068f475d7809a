//! Create a sample repository for interoperability checks: `sample_repo DIR`.
//!
//! Publishes `components/engine` versions 1 and 2 (a 64 KiB file and a small edit of it, so
//! version 2 carries a delta) into `DIR`; the served tree is `DIR/public`.

use cascade_core::Category;
use cascade_repo::{Expiries, PublishOptions};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).ok_or("usage: sample_repo DIR")?;
    let dir = std::path::PathBuf::from(dir);
    let now = jiff::Timestamp::now();
    let publisher =
        cascade_repo::init(&dir, &dir.join("offline-keys"), Expiries::default(), now).await?;
    let mut data: Vec<u8> = (0..65_536u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13).to_le_bytes()[0])
        .collect();
    for version in ["1", "2"] {
        let src = dir.join("src").join(version);
        std::fs::create_dir_all(&src)?;
        std::fs::write(src.join("data.bin"), &data)?;
        let files = [src.join("data.bin")];
        publisher
            .publish(
                Category::Components,
                "engine",
                version,
                &files,
                PublishOptions::default(),
                now,
            )
            .await?;
        data[100..108].copy_from_slice(b"changed!");
    }
    Ok(())
}
