#!/usr/bin/env bash
# Notification-stream benchmark: one cascade server (a child of sse-bench, SQLite, cheap
# credential hashing) holds CLIENTS `GET /api/client/events` streams, each from its own
# 127.2.x.y source address; then `POST /api/notify`, timed until the last stream has its
# `notify` event. Prints streams held, server RSS idle/holding/peak and notify p50/p99/last.
#
# Usage: bench/server/sse.sh [sse-bench options]     (e.g. --clients 2000)
# Env:   SSE_BIN (default target/release/sse-bench; built with
#        `cargo build --release -p cascade-bench --bin sse-bench`);
#        SSE_SERVER_WRAP runs the server child under a command, e.g. `SSE_SERVER_WRAP=heaptrack`
#        (the RSS figures are then the wrapper's).
set -euo pipefail

SSE_BIN=${SSE_BIN:-target/release/sse-bench}
[ -x "$SSE_BIN" ] || { echo "no sse-bench at $SSE_BIN (cargo build --release -p cascade-bench --bin sse-bench)" >&2; exit 1; }

# One descriptor per stream on each side (the server is a child: it inherits the limit).
ulimit -n "$(ulimit -Hn)"
echo "open files: $(ulimit -n); load before: $(uptime)"
"$SSE_BIN" "$@"
echo "load after: $(uptime)"
