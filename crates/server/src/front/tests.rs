//! The front's own tests (its answers over real HTTP: `tests/api/front.rs`).

use super::*;

// A held connection's future stays small: hyper's connection state (handed over, boxed)
// is not part of it (1.2 KiB in a debug build; hyper's inline would add several KiB).
#[tokio::test]
async fn held_connection_future_is_small() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let c = tokio::net::TcpStream::connect(l.local_addr().unwrap())
        .await
        .unwrap();
    let front = Arc::new(Front {
        served: Served {
            dir: std::env::temp_dir(),
            site: None,
            cache: Arc::default(),
        },
        metrics: Arc::default(),
        limits: ServeLimits::default(),
        home: None,
    });
    let (_tx, rx) = watch::channel(false);
    let peer = c.local_addr().unwrap();
    let slot = Arc::new(tokio::sync::Semaphore::new(1))
        .acquire_owned()
        .await
        .unwrap();
    let f = serve(c, front, axum::Router::new(), rx, peer, slot);
    let size = std::mem::size_of_val(&f);
    assert!(size <= 2048, "serve<TcpStream> future: {size} bytes");
}
