#!/usr/bin/env bash
# Static file serving benchmark: the cascade server's /repo/ against nginx (Debian
# nginx-light), same files, same machine, both on 127.0.0.1, driven by wrk. Prints
# requests/s and bytes/s for a 4 KiB and a 20 MiB file and the cascade/nginx ratio.
# Each measurement is repeated REPEAT times, nginx and cascade alternating, and the median
# is printed (the machine is shared; say what `uptime` said next to the figures). Also
# printed: the server's CPU time per request (user + system of its processes over the run,
# divided by the requests), which depends less on what else the machine is doing.
#
# Usage: bench/server/run.sh            (installs nginx-light and wrk with apt-get if missing)
# Env:   CASCADE_BIN (default target/release/cascade), DURATION (10s), THREADS (2),
#        SMALL_CONNS (64), LARGE_CONNS (8), REPEAT (3),
#        PIN (unset; 1 = servers on CPU 1 with one worker each, wrk on CPU 0 with one thread).
set -euo pipefail

CASCADE_BIN=${CASCADE_BIN:-target/release/cascade}
DURATION=${DURATION:-10s}
THREADS=${THREADS:-2}
SMALL_CONNS=${SMALL_CONNS:-64}
LARGE_CONNS=${LARGE_CONNS:-8}
REPEAT=${REPEAT:-3}
PIN=${PIN:-}

server_cpu=()
load_cpu=()
workers=auto
if [ -n "$PIN" ]; then
    server_cpu=(taskset -c 1)
    load_cpu=(taskset -c 0)
    workers=1
    THREADS=1
fi

if ! command -v nginx >/dev/null || ! command -v wrk >/dev/null; then
    echo "installing nginx-light and wrk (Debian packages)" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wrk >/dev/null
fi
[ -x "$CASCADE_BIN" ] || { echo "no cascade binary at $CASCADE_BIN (cargo build --release -p cascade-cli)" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
NGINX_PORT=$(free_port)
CASCADE_PORT=$(free_port)

mkdir -p "$work/data/repo" "$work/nginx"
head -c 4096 /dev/urandom >"$work/data/repo/small.bin"
head -c $((20 * 1024 * 1024)) /dev/urandom >"$work/data/repo/large.bin"

user_line=""
[ "$(id -u)" = 0 ] && user_line="user root;"
cat >"$work/nginx/nginx.conf" <<CONF
$user_line
worker_processes $workers;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    client_body_temp_path $work/nginx/body;
    proxy_temp_path $work/nginx/proxy;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location /repo/ { alias $work/data/repo/; etag on; }
    }
}
CONF
"${server_cpu[@]}" nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" &
pids+=($!)
nginx_pid=$!
RUST_LOG=warn "${server_cpu[@]}" "$CASCADE_BIN" server --listen "127.0.0.1:$CASCADE_PORT" --data-dir "$work/data" >"$work/cascade.log" 2>&1 &
pids+=($!)
cascade_pid=$!

for url in "http://127.0.0.1:$NGINX_PORT/repo/small.bin" "http://127.0.0.1:$CASCADE_PORT/repo/small.bin"; do
    for _ in $(seq 100); do curl -fsS -o /dev/null "$url" 2>/dev/null && break; sleep 0.1; done
    curl -fsS -o /dev/null "$url" || { echo "server at $url did not come up" >&2; cat "$work/cascade.log" >&2; exit 1; }
done

# CPU ticks (user + system, all threads) used so far by the given processes.
ticks() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat"))); done; echo "$t"; }
HZ=$(getconf CLK_TCK)

# One wrk run against URL with CONNS connections, the server being PIDS: prints
# "requests/s bytes/s server-CPU-microseconds-per-request".
# wrk prints "Requests/sec: N" and "Transfer/sec: N{B,KB,MB,GB}".
measure() {
    local url=$1 conns=$2 before out
    shift 2
    before=$(ticks "$@")
    out=$("${load_cpu[@]}" wrk -t"$THREADS" -c"$conns" -d"$DURATION" "$url")
    awk -v cpu=$(($(ticks "$@") - before)) -v hz="$HZ" -v secs="${DURATION%s}" '
        /Requests\/sec:/ { rps = $2 }
        /Transfer\/sec:/ { v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[A-Za-z]+$/, "", v);
                           m = (u == "GB") ? 1073741824 : (u == "MB") ? 1048576 : (u == "KB") ? 1024 : 1;
                           bps = v * m }
        END { printf "%.1f %.0f %.1f\n", rps, bps, (rps > 0 ? cpu / hz * 1e6 / (rps * secs) : 0) }' <<<"$out"
}

# The median "rps bps" line of the lines on stdin (by requests/s).
median() { sort -n | awk '{ l[NR] = $0 } END { print l[int((NR + 1) / 2)] }'; }

echo "load before: $(uptime)"
[ -n "$PIN" ] && echo "pinned: servers on CPU 1 (one worker), wrk on CPU 0 (one thread)"
printf "%-10s %-8s %14s %16s %12s   %s\n" file server "requests/s" "bytes/s" "CPU us/req" "runs (requests/s)"
for f in small large; do
    conns=$SMALL_CONNS
    [ "$f" = large ] && conns=$LARGE_CONNS
    n_runs=()
    c_runs=()
    for _ in $(seq "$REPEAT"); do
        # shellcheck disable=SC2046 # one pid per word
        n_runs+=("$(measure "http://127.0.0.1:$NGINX_PORT/repo/$f.bin" "$conns" "$nginx_pid" $(pgrep -P "$nginx_pid"))")
        c_runs+=("$(measure "http://127.0.0.1:$CASCADE_PORT/repo/$f.bin" "$conns" "$cascade_pid")")
    done
    read -r n_rps n_bps n_cpu < <(printf '%s\n' "${n_runs[@]}" | median)
    read -r c_rps c_bps c_cpu < <(printf '%s\n' "${c_runs[@]}" | median)
    label=$([ "$f" = small ] && echo "4KiB" || echo "20MiB")
    printf "%-10s %-8s %14s %16s %12s   %s\n" "$label" nginx "$n_rps" "$n_bps" "$n_cpu" "$(printf '%s\n' "${n_runs[@]}" | cut -d' ' -f1 | tr '\n' ' ')"
    printf "%-10s %-8s %14s %16s %12s   %s\n" "$label" cascade "$c_rps" "$c_bps" "$c_cpu" "$(printf '%s\n' "${c_runs[@]}" | cut -d' ' -f1 | tr '\n' ' ')"
    awk -v c="$c_rps" -v n="$n_rps" -v l="$label" 'BEGIN { printf "%-10s ratio    %14.2f  (cascade/nginx, medians of requests/s; target >= 0.8)\n", l, (n > 0 ? c / n : 0) }'
done
echo "load after: $(uptime)"
