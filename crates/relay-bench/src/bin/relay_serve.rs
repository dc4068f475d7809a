//! The update agent's relay (`cascade_agent::relay::Relay`) in a process of its own, for
//! `bench/relay/run`: the same cache, fetch coalescing, hash checks and front door as
//! `cascade agent --relay`, on a tokio runtime built as the agent builds its own, without the
//! agent's server, enrollment and update cycles around it.
//!
//! `--front servefile` serves `/repo/` as the relay did before its own front door (axum with
//! tower-http's `ServeFile`, 64 KiB `tokio::fs` reads on the blocking pool), for a before and
//! after in the same run.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use axum::extract::{Path as UrlPath, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse as _, Response};
use cascade_agent::clock::SystemClock;
use cascade_agent::relay::{Relay, RelayConfig};
use cascade_repo::{SourceTransport, TransportLimits};
use clap::{Parser, ValueEnum};
use tower::ServiceExt as _;
use url::Url;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Front {
    /// The relay's own front door (`sendfile`).
    Sendfile,
    /// axum with tower-http's `ServeFile` (the relay before its front door).
    Servefile,
}

/// Runs a relay until killed.
#[derive(Debug, Parser)]
struct Args {
    /// Address to serve at.
    #[arg(long)]
    listen: SocketAddr,
    /// The upstream `/repo/` root, e.g. `http://127.0.0.1:8080/repo/`.
    #[arg(long)]
    upstream: Url,
    /// The cache directory.
    #[arg(long)]
    cache: PathBuf,
    /// How files are served.
    #[arg(long, value_enum, default_value = "sendfile")]
    front: Front,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // As `cascade agent` builds its runtime: one worker per CPU it may run on.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("runtime")?;
    rt.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let transport = SourceTransport::new(TransportLimits::default()).context("HTTP client")?;
    let relay = Relay::new(
        RelayConfig {
            cache_dir: args.cache.clone(),
            // As the agent's daemon sets them.
            max_concurrent_fetches: 8,
            max_cache_bytes: u64::MAX,
            clock: Arc::new(SystemClock),
        },
        transport,
        0,
    );
    relay.set_upstreams(vec![args.upstream.clone()]);
    let listener =
        cascade_front::listen(args.listen).with_context(|| format!("bind {}", args.listen))?;
    println!("relay-serve: listening on {}", args.listen);
    match args.front {
        Front::Sendfile => relay.serve(listener, std::future::pending()).await,
        Front::Servefile => {
            let app = axum::Router::new()
                .route("/repo/{*path}", axum::routing::get(serve_file))
                .with_state(relay);
            axum::serve(listener, app).await.context("serve")?;
        }
    }
    Ok(())
}

/// `/repo/{path}` as the relay served it with `ServeFile`.
async fn serve_file(
    State(relay): State<Arc<Relay>>,
    UrlPath(path): UrlPath<String>,
    req: Request,
) -> Response {
    match relay.obtain(&path).await {
        Ok(file) => match tower_http::services::ServeFile::new(file)
            .oneshot(req)
            .await
        {
            Ok(resp) => resp.into_response(),
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        },
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}
