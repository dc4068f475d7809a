//! Durability on a full disk: the server's data directory on a small tmpfs that the test fills.
//! Every write the server acknowledged must still be there after the disk frees up and the
//! server restarts; while the disk is full, writes are refused with 503 (not 500), and the
//! server recovers by itself, enrolments included, once space returns.
//!
//! Mounting a tmpfs needs root (`scripts/test` runs as root); as another user, point
//! `CASCADE_TEST_TMPFS` at an empty tmpfs of a few MiB that you may write to. Without either the
//! test fails: it never passes without the fault it injects.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use cascade_client::proto::SourceBody;
use reqwest::Method;

use crate::harness::{json, start_with};

/// A small tmpfs: mounted for this test (and unmounted after), or given by the environment.
struct SmallDisk {
    path: PathBuf,
    mounted: bool,
    _dir: Option<tempfile::TempDir>,
}

impl SmallDisk {
    fn new() -> SmallDisk {
        if let Ok(given) = std::env::var("CASCADE_TEST_TMPFS") {
            return SmallDisk {
                path: PathBuf::from(given),
                mounted: false,
                _dir: None,
            };
        }
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test mounts a 4 MiB tmpfs to fill it, which needs root (or set \
             CASCADE_TEST_TMPFS to an empty small tmpfs): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk {
            path: dir.path().to_owned(),
            mounted: true,
            _dir: Some(dir),
        }
    }

    /// Writes zeros until the file system says it is full; returns the filler's path.
    fn fill(&self) -> PathBuf {
        let filler = self.path.join("filler");
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 16 * 1024];
        loop {
            if let Err(e) = f.write_all(&chunk) {
                assert_eq!(e.raw_os_error(), Some(28), "expected ENOSPC, got {e}");
                break;
            }
        }
        // Whatever is left below one chunk.
        while f.write_all(&[0u8; 512]).is_ok() {}
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        if self.mounted {
            let _ = Command::new("umount").arg("-l").arg(&self.path).output();
        }
    }
}

fn source(i: usize) -> SourceBody {
    SourceBody {
        range: format!("10.9.{i}.0/24"),
        agent: None,
        url: Some(format!("http://mirror{i}.example/")),
    }
}

async fn listed_ranges(s: &crate::harness::TestServer) -> Vec<String> {
    let v = s.admin(Method::GET, "/api/sources", None).await.expect(200);
    v["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["range"].as_str().unwrap().to_owned())
        .collect()
}

fn data_dir(disk: &Path) -> PathBuf {
    disk.join("data")
}

// Acknowledged writes survive a full disk and a restart; refusals are 503 with a clear code;
// the server needs no restart to take writes and enrolments again.
#[tokio::test]
async fn full_disk_loses_no_acknowledged_write() {
    let disk = SmallDisk::new();
    let dir = data_dir(&disk.path);
    let s = start_with(&dir, None, None).await;
    s.admin(Method::POST, "/api/sources", json(&source(0)))
        .await
        .expect(201);

    let filler = disk.fill();
    let mut acknowledged = vec!["10.9.0.0/24".to_owned()];
    let mut refused = 0;
    for i in 1..=20 {
        let r = s
            .admin(Method::POST, "/api/sources", json(&source(i)))
            .await;
        match r.status.as_u16() {
            201 => acknowledged.push(format!("10.9.{i}.0/24")),
            503 => {
                let what = r.what.clone();
                let body = r.body;
                assert_eq!(
                    body["error"]["code"], "storage.unavailable",
                    "{what}: {body}"
                );
                refused += 1;
            }
            other => panic!(
                "POST /api/sources on a full disk answered {other}: {}",
                r.body
            ),
        }
    }
    assert!(
        refused > 0,
        "the disk was never full: the test did not inject its fault"
    );

    // Space returns: the same server takes writes and enrolments again, without a restart.
    std::fs::remove_file(filler).unwrap();
    s.admin(Method::POST, "/api/sources", json(&source(21)))
        .await
        .expect(201);
    acknowledged.push("10.9.21.0/24".to_owned());
    s.enroll_client("after-full-disk", None).await;
    let before_restart = listed_ranges(&s).await;
    assert_eq!(before_restart, acknowledged, "the list before the restart");

    // A restart reads the same list back: what was acknowledged was committed.
    let previous = s.stop().await;
    let s = start_with(&dir, None, Some(previous)).await;
    assert_eq!(
        listed_ranges(&s).await,
        acknowledged,
        "acknowledged source entries after a restart"
    );
    let clients = s.admin(Method::GET, "/api/clients", None).await.expect(200);
    assert!(
        clients.to_string().contains("after-full-disk"),
        "the enrolment after the disk freed up survives a restart: {clients}"
    );
    s.stop().await;
}
