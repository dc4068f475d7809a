//! Tests of the metrics: series keys and cumulative buckets, full tables, and the front's
//! shards summed across threads.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use axum::http::Method;

use super::latency::method_index;
use super::*;

// Series are keyed by route, method and exact status; buckets render cumulatively.
#[test]
fn series_render() {
    let m = Metrics::default();
    let enroll = m.route("/api/client/enroll").unwrap();
    assert_eq!(m.route("/api/client/enroll"), Some(enroll));
    assert_eq!(m.route(REPO_ROUTE), Some(m.repo));
    m.observe(enroll, method_index(&Method::POST), 201, 2_000_000);
    m.observe(enroll, method_index(&Method::POST), 201, 20_000_000);
    m.observe(m.repo, method_index(&Method::GET), 304, 10);
    m.observe(
        m.repo,
        method_index(&Method::from_bytes(b"BREW").unwrap()),
        404,
        10,
    );
    let text = m.render(&[], &[]);
    let enroll = "method=\"POST\",route=\"/api/client/enroll\",status=\"201\"";
    for line in [
        format!("cascade_http_request_duration_seconds_bucket{{{enroll},le=\"0.001\"}} 0"),
        format!("cascade_http_request_duration_seconds_bucket{{{enroll},le=\"0.0025\"}} 1"),
        format!("cascade_http_request_duration_seconds_bucket{{{enroll},le=\"0.025\"}} 2"),
        format!("cascade_http_request_duration_seconds_count{{{enroll}}} 2"),
        format!("cascade_http_request_duration_seconds_sum{{{enroll}}} 0.022"),
        "cascade_http_request_duration_seconds_count{method=\"GET\",route=\"/repo/*\",status=\"304\"} 1".to_owned(),
        "cascade_http_request_duration_seconds_count{method=\"OTHER\",route=\"/repo/*\",status=\"404\"} 1".to_owned(),
    ] {
        assert!(text.contains(&line), "{line} in\n{text}");
    }
}

// Many labels and series fill the tables without losing the ones already there.
#[test]
fn full_tables() {
    let m = Metrics::default();
    let labels: Vec<String> = (0..ROUTES + 5).map(|i| format!("/r/{i}")).collect();
    let got: Vec<Option<usize>> = labels.iter().map(|l| m.route(l)).collect();
    assert_eq!(got.iter().filter(|r| r.is_some()).count(), ROUTES - 1);
    for (i, r) in got
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.map(|r| (i, r)))
    {
        assert_eq!(m.route(&labels[i]), Some(r));
        for status in 100..110 {
            m.observe(r, 0, status, 1);
        }
    }
    assert_eq!(
        m.series
            .iter()
            .filter(|s| s.key.load(Ordering::Relaxed) != 0)
            .count(),
        SERIES
    );
    assert!(m.dropped.load(Ordering::Relaxed) > 0);
}

// The front's answers recorded from many threads (each writing its own shard) render as
// the exact totals, merged with the routed `/repo/` series of the same key.
#[test]
fn front_answers_from_many_threads() {
    let m = Arc::new(Metrics::default());
    let started = Instant::now();
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let m = Arc::clone(&m);
            std::thread::spawn(move || {
                for i in 0..1000u64 {
                    match i % 4 {
                        0 | 1 => m.repo_answered(false, 200, 4096 + t, started),
                        2 => m.repo_answered(true, 200, 4096, started),
                        _ => m.repo_answered(false, 304, 0, started),
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // One routed answer of the same series and one of a status the front never gives.
    m.observe(m.repo, method_index(&Method::GET), 200, 10);
    m.repo_answered(false, 404, 0, started);
    let text = m.render(&[], &[]);
    let bytes: u64 = (0..8).map(|t| 500 * (4096 + t) + 250 * 4096).sum();
    assert_eq!(m.repo_bytes(), bytes);
    for line in [
        format!("cascade_repo_bytes_total {bytes}"),
        "cascade_repo_responses_total 8001".to_owned(),
        "cascade_http_request_duration_seconds_count{method=\"GET\",route=\"/repo/*\",status=\"200\"} 4001".to_owned(),
        "cascade_http_request_duration_seconds_bucket{method=\"GET\",route=\"/repo/*\",status=\"200\",le=\"+Inf\"} 4001".to_owned(),
        "cascade_http_request_duration_seconds_count{method=\"HEAD\",route=\"/repo/*\",status=\"200\"} 2000".to_owned(),
        "cascade_http_request_duration_seconds_count{method=\"GET\",route=\"/repo/*\",status=\"304\"} 2000".to_owned(),
        "cascade_http_request_duration_seconds_count{method=\"GET\",route=\"/repo/*\",status=\"404\"} 1".to_owned(),
    ] {
        assert!(text.contains(&line), "{line} in\n{text}");
    }
    // One series per key, in order.
    let series: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("cascade_http_request_duration_seconds_count"))
        .collect();
    assert_eq!(series.len(), 4, "{text}");
    assert!(!text.contains("method=\"HEAD\",route=\"/repo/*\",status=\"304\""));
}
