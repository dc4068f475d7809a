//! The admin subcommands against a real server: `agents`, `sources`, `notify`, `clients` and
//! `policy export` speak the typed API, print tables or the server's JSON, and turn refusals
//! into exit status 2 with the server's code and message (1 for a refused token).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

use std::process::{Command, Output};

use cascade_client::proto::{
    ClientsResponse, ComplianceResponse, FleetHealth, HealthLevel, SourcesResponse,
};
use cascade_testkit::cli::{admin_command, admin_fleet, output, output_with_stdin, text};
use cascade_testkit::Fleet;

/// Runs `cascade ARGS --server URL` with `token` as the admin token and no config file.
async fn cascade(fleet: &Fleet, token: &str, args: &[&str]) -> Output {
    let cmd = admin_command(env!("CARGO_BIN_EXE_cascade"), fleet, token, args);
    output(cmd).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_commands_over_the_api() {
    let tmp = tempfile::tempdir().unwrap();
    let fleet = admin_fleet(tmp.path()).await.unwrap();
    let admin = fleet.admin.clone();

    let out = cascade(
        &fleet,
        &admin,
        &[
            "agents",
            "add",
            "127.0.0.5:8443",
            "--capability",
            "components",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "ok: policy revision 2");

    let out = cascade(
        &fleet,
        &admin,
        &[
            "sources",
            "add",
            "--range",
            "10.0.0.0/24",
            "--agent",
            "127.0.0.5:8443",
            "--json",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let list: SourcesResponse = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.revision, 3);
    assert_eq!(list.sources[0].agent.as_deref(), Some("127.0.0.5:8443"));

    // Bad input: exit 2, naming the server's code and the value.
    let out = cascade(
        &fleet,
        &admin,
        &[
            "sources",
            "add",
            "--range",
            "10.0.0.9-10.0.0.1",
            "--url",
            "http://m.example/",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("HTTP 422 [range.reversed]"), "{err}");
    assert!(err.contains("10.0.0.9-10.0.0.1"), "{err}");
    let out = cascade(&fleet, &admin, &["agents", "rm", "127.0.0.5:8443"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("[policy.agent_in_use]"));
    // A stale revision is refused too (409), and nothing changes.
    let out = cascade(&fleet, &admin, &["sources", "rm", "1", "--revision", "2"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("[policy.stale_revision]"));

    let out = cascade(&fleet, &admin, &["sources", "list"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(table.contains("agent:127.0.0.5:8443"), "{table}");
    assert!(table.contains("revision 3"), "{table}");

    let out = cascade(&fleet, &admin, &["agents", "list"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(
        table.contains("127.0.0.5:8443") && table.contains("components"),
        "{table}"
    );

    // The agent has a health column; `cascade health` and `cascade compliance` show what the
    // console shows, and --json is the API's answer.
    assert!(
        table.contains("health") && table.contains("unknown"),
        "{table}"
    );
    let out = cascade(&fleet, &admin, &["health"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let health = text(&out.stdout);
    assert!(
        health.contains("agent:127.0.0.5:8443") && health.contains("unknown"),
        "{health}"
    );
    let out = cascade(&fleet, &admin, &["health", "--json"]).await;
    let v: FleetHealth = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.sources[0].level, HealthLevel::Unknown);
    let out = cascade(&fleet, &admin, &["compliance"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let comp = text(&out.stdout);
    assert!(
        comp.contains("programs") && comp.contains("nothing published"),
        "{comp}"
    );
    let out = cascade(&fleet, &admin, &["compliance", "--json"]).await;
    let v: ComplianceResponse = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.categories.len(), 3);

    let out = cascade(&fleet, &admin, &["notify", "--category", "components"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("notify 1: 0 update agents now"));

    let out = cascade(&fleet, &admin, &["clients", "--stale", "--json"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let clients: ClientsResponse = serde_json::from_slice(&out.stdout).unwrap();
    assert!(clients.clients.is_empty());

    let out = cascade(&fleet, &admin, &["policy", "export"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let toml = text(&out.stdout);
    assert!(
        toml.starts_with("# cascade policy, server revision 3"),
        "{toml}"
    );
    assert!(toml.contains("127.0.0.5:8443"), "{toml}");

    // A refused token: status 1 and a hint.
    let out = cascade(&fleet, "cascade_adm_wrong", &["sources", "list"]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("HTTP 401") && err.contains("check CASCADE_TOKEN"),
        "{err}"
    );
}

/// [`cascade`] with `stdin` on standard input.
async fn cascade_in(fleet: &Fleet, token: &str, args: &[&str], stdin: &str) -> Output {
    let cmd = admin_command(env!("CARGO_BIN_EXE_cascade"), fleet, token, args);
    output_with_stdin(cmd, stdin).await.unwrap()
}

// `cascade users` and `cascade tokens`: an admin makes a viewer and a token for it; the
// viewer's token reads but is refused a write; revoked, it is refused altogether.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_and_tokens_commands() {
    use cascade_client::proto::{IssuedToken, TokensResponse, UsersResponse};
    let tmp = tempfile::tempdir().unwrap();
    let mut fleet = admin_fleet(tmp.path()).await.unwrap();
    let admin = fleet.admin.clone();
    let out = cascade_in(
        &fleet,
        &admin,
        &["users", "add", "vera", "--role", "viewer"],
        "vera-password-long\n",
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "ok: user vera (viewer)");
    let out = cascade(&fleet, &admin, &["users", "list", "--json"]).await;
    let users: UsersResponse = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(users.users.len(), 2);

    let out = cascade(
        &fleet,
        &admin,
        &[
            "tokens", "create", "--label", "laptop", "--user", "vera", "--json",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let issued: IssuedToken = serde_json::from_slice(&out.stdout).unwrap();
    let vera = issued.token;
    let out = cascade(&fleet, &vera, &["tokens", "list", "--json"]).await;
    let listed: TokensResponse = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.tokens.len(), 1);
    assert_eq!(listed.tokens[0].user, "vera");
    // A viewer may read, not write (refused: exit 1, naming the role).
    let out = cascade(&fleet, &vera, &["agents", "list"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = cascade(&fleet, &vera, &["agents", "add", "127.0.0.5:8443"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("admin role"),
        "{}",
        text(&out.stderr)
    );

    let out = cascade(&fleet, &admin, &["tokens", "revoke", &issued.info.id]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = cascade(&fleet, &vera, &["agents", "list"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    fleet.stop().await;
}

// The admin CLI trusts only the CA it is given (`--ca`, `CASCADE_CA`) or, run where the
// server's data directory is (`CASCADE_DATA_DIR`), the server's own `tls/ca.pem`; with none
// of them the server's certificate is refused (`docs/operating.md#tls`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_trusts_the_servers_ca_only_when_given() {
    let tmp = tempfile::tempdir().unwrap();
    let fleet = admin_fleet(tmp.path()).await.unwrap();
    let run = |extra: Vec<(String, String)>, data_dir: &std::path::Path| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cascade"));
        cmd.args(["clients", "--server", fleet.url.as_str()])
            .args(extra.iter().flat_map(|(k, v)| [k.clone(), v.clone()]))
            .current_dir(tmp.path())
            .env("CASCADE_TOKEN", &fleet.admin)
            .env("CASCADE_CONFIG", "/nonexistent/cascade-cli.toml")
            .env("CASCADE_DATA_DIR", data_dir)
            .env_remove("CASCADE_CA")
            .env_remove("CASCADE_SERVER");
        cmd.output().unwrap()
    };
    let nowhere = tmp.path().join("no-such-data-dir");
    let refused = tokio::task::block_in_place(|| run(Vec::new(), &nowhere));
    assert!(!refused.status.success(), "answered without a trusted CA");
    assert!(
        text(&refused.stderr).contains("cannot reach the server"),
        "{}",
        text(&refused.stderr)
    );
    let ca = fleet.data_dir.join("tls/ca.pem");
    let given = tokio::task::block_in_place(|| {
        run(vec![("--ca".into(), ca.display().to_string())], &nowhere)
    });
    assert!(given.status.success(), "{}", text(&given.stderr));
    let local = tokio::task::block_in_place(|| run(Vec::new(), &fleet.data_dir));
    assert!(local.status.success(), "{}", text(&local.stderr));
}
