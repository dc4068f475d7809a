//! `cascade domains list|show|set|edit` against a real server: a change is stored at the next
//! version and published, the ActiveUpdate privilege is set per domain, bad values exit 2
//! naming the field and change nothing, and `edit` round-trips through `$EDITOR`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Output;

use cascade_client::proto::{DomainSettingsList, DomainSettingsView};
use cascade_testkit::cli::{admin_command, admin_fleet, output, text};
use cascade_testkit::Fleet;

/// Runs `cascade ARGS --server URL` as the fleet's admin, with no config file, no `$VISUAL`
/// and `$EDITOR` set to `editor` when given.
async fn cascade(fleet: &Fleet, args: &[&str], editor: Option<&str>) -> Output {
    let mut cmd = admin_command(env!("CARGO_BIN_EXE_cascade"), fleet, &fleet.admin, args);
    cmd.env_remove("VISUAL");
    if let Some(e) = editor {
        cmd.env("EDITOR", e);
    }
    output(cmd).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn domains_over_the_api() {
    let tmp = tempfile::tempdir().unwrap();
    let fleet = admin_fleet(tmp.path()).await.unwrap();

    let out = cascade(
        &fleet,
        &[
            "domains",
            "set",
            "sales",
            "--interval",
            "600",
            "--jitter",
            "30",
            "--window",
            "22-6",
            "--download-cap",
            "100000",
            "--activeupdate",
            "on",
        ],
        None,
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("domain-settings/sales/1/settings.json"),
        "{}",
        text(&out.stdout)
    );

    let out = cascade(&fleet, &["domains", "show", "sales", "--json"], None).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: DomainSettingsView = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v.own);
    assert_eq!(
        (
            v.settings.interval_secs,
            v.settings.jitter_secs,
            v.settings.download_cap
        ),
        (600, 30, 100_000)
    );
    assert_eq!(v.settings.windows.len(), 1);

    // Out of bounds: exit 2 naming the field and the value; nothing stored.
    let out = cascade(
        &fleet,
        &["domains", "set", "sales", "--jitter", "9000"],
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("domains.sales.settings.jitter_secs") && err.contains("9000"),
        "{err}"
    );

    // `edit`: the editor (here a sed script) changes the interval.
    let out = cascade(
        &fleet,
        &["domains", "edit", "sales"],
        Some("sed -i 's/\"interval_secs\": 600/\"interval_secs\": 900/'"),
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = cascade(&fleet, &["domains", "list", "--json"], None).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let list: DomainSettingsList = serde_json::from_slice(&out.stdout).unwrap();
    let sales = &list.domains["sales"];
    assert_eq!(sales.privileges.download_from_activeupdate, Some(true));
    let s = sales.settings.as_ref().unwrap();
    assert_eq!((s.version, s.interval_secs), (2, 900));
    assert_eq!(list.default.version, 0);

    // The table names the default and the domain.
    let out = cascade(&fleet, &["domains", "list"], None).await;
    let table = text(&out.stdout);
    assert!(
        table.contains("default") && table.contains("sales") && table.contains("v2"),
        "{table}"
    );
}
