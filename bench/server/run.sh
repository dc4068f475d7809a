#!/usr/bin/env bash
# Static file serving benchmark: the cascade server's /repo/ against nginx (Debian
# nginx-light, sendfile on), same files, same machine, same pinning, same run, all on
# 127.0.0.1, driven by wrk. For a 4 KiB and a 20 MiB file it prints every run of each
# server (nginx and cascade alternating), the medians, the cascade/nginx ratio of the
# medians, and the servers' CPU per request and per GB (user + system time of their
# processes over the run, the kernel's loopback work on their behalf included: it depends
# less on what else the machine does than requests/s).
#
# cascade runs twice: on plain HTTP (`--insecure-plain-http`, the flag says what it is:
# whole files go out by sendfile(2)) and, with TLS=1, also over TLS (its own CA; wrk does
# not verify), so the cost of TLS per request and per GB is measured in the same run.
# Those two run with `--accept shared`; with PER_THREAD=1 (the default) each of them runs
# once more with `--accept per-thread` (the default of `cascade server`:
# a listener and a current-thread runtime per thread, SO_REUSEPORT: docs/operating.md#accept-per-thread),
# named cascade-pt (and cascade-pt-tls); at the end the script prints how the kernel spread
# that server's connections over its listeners (`cascade_accepted_connections_total`).
#
# Usage: bench/server/run.sh   (installs nginx-light and wrk with apt-get if missing)
# Env:   CASCADE_BIN (default target/release/cascade), DURATION (10s), REPEAT (3),
#        SMALL_CONNS (64), LARGE_CONNS (8), TLS (1; 0 = plain only),
#        SERVER_CPUS (CPU list for the servers, e.g. "1" or "0-3"; default unpinned),
#        LOAD_CPUS (CPU list for wrk, e.g. "0" or "6-15"; default unpinned),
#        WORKERS (nginx worker_processes; default: the number of SERVER_CPUS, else auto;
#                 cascade's tokio runtime takes one worker per CPU it may run on),
#        THREADS (wrk threads; default: the number of LOAD_CPUS, else 2),
#        PER_THREAD (1; 0 = shared accept only), ACCEPT_THREADS (--accept-threads of the
#                 per-thread servers; default: the CPUs they may run on),
#        PIN=1 (shorthand kept from before: SERVER_CPUS=1 LOAD_CPUS=0).
set -euo pipefail

CASCADE_BIN=${CASCADE_BIN:-target/release/cascade}
DURATION=${DURATION:-10s}
SMALL_CONNS=${SMALL_CONNS:-64}
LARGE_CONNS=${LARGE_CONNS:-8}
REPEAT=${REPEAT:-3}
TLS=${TLS:-1}
PER_THREAD=${PER_THREAD:-1}
ACCEPT_THREADS=${ACCEPT_THREADS:-}
if [ -n "${PIN:-}" ]; then
    SERVER_CPUS=${SERVER_CPUS:-1}
    LOAD_CPUS=${LOAD_CPUS:-0}
fi
SERVER_CPUS=${SERVER_CPUS:-}
LOAD_CPUS=${LOAD_CPUS:-}

# The number of CPUs in a list such as "0-3,6".
count_cpus() { awk -v l="$1" 'BEGIN { n = split(l, p, ","); t = 0; for (i = 1; i <= n; i++) { if (split(p[i], r, "-") == 2) t += r[2] - r[1] + 1; else t += 1 } print t }'; }

server_cpu=()
load_cpu=()
WORKERS=${WORKERS:-auto}
if [ -n "$SERVER_CPUS" ]; then
    server_cpu=(taskset -c "$SERVER_CPUS")
    [ "$WORKERS" = auto ] && WORKERS=$(count_cpus "$SERVER_CPUS")
fi
if [ -n "$LOAD_CPUS" ]; then
    load_cpu=(taskset -c "$LOAD_CPUS")
    THREADS=${THREADS:-$(count_cpus "$LOAD_CPUS")}
fi
THREADS=${THREADS:-2}

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
PLAIN_PORT=$(free_port)
TLS_PORT=$(free_port)
PT_PORT=$(free_port)
PT_TLS_PORT=$(free_port)

mkdir -p "$work/data/repo" "$work/tls/repo" "$work/pt/repo" "$work/pt-tls/repo" "$work/nginx"
head -c 4096 /dev/urandom >"$work/data/repo/small.bin"
head -c $((20 * 1024 * 1024)) /dev/urandom >"$work/data/repo/large.bin"
for d in tls pt pt-tls; do cp "$work/data/repo/small.bin" "$work/data/repo/large.bin" "$work/$d/repo/"; done
pt_args=(--accept per-thread)
shared_args=(--accept shared)
if ! "$CASCADE_BIN" server --help 2>/dev/null | grep -q -- '--accept '; then
    echo "note: $CASCADE_BIN has no --accept (a build from before it): shared accept only" >&2
    shared_args=()
    PER_THREAD=0
fi
[ -n "$ACCEPT_THREADS" ] && pt_args+=(--accept-threads "$ACCEPT_THREADS")

user_line=""
[ "$(id -u)" = 0 ] && user_line="user root;"
cat >"$work/nginx/nginx.conf" <<CONF
$user_line
worker_processes $WORKERS;
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
RUST_LOG=warn "${server_cpu[@]}" "$CASCADE_BIN" server --insecure-plain-http "${shared_args[@]}" \
    --listen "127.0.0.1:$PLAIN_PORT" --data-dir "$work/data" >"$work/plain.log" 2>&1 &
pids+=($!)
plain_pid=$!
servers=("nginx http://127.0.0.1:$NGINX_PORT $nginx_pid" "cascade http://127.0.0.1:$PLAIN_PORT $plain_pid")
if [ "$TLS" = 1 ]; then
    RUST_LOG=warn "${server_cpu[@]}" "$CASCADE_BIN" server "${shared_args[@]}" \
        --listen "127.0.0.1:$TLS_PORT" --data-dir "$work/tls" >"$work/tls.log" 2>&1 &
    pids+=($!)
    servers+=("cascade-tls https://127.0.0.1:$TLS_PORT $!")
fi
if [ "$PER_THREAD" = 1 ]; then
    RUST_LOG=warn "${server_cpu[@]}" "$CASCADE_BIN" server --insecure-plain-http "${pt_args[@]}" \
        --listen "127.0.0.1:$PT_PORT" --data-dir "$work/pt" >"$work/pt.log" 2>&1 &
    pids+=($!)
    servers+=("cascade-pt http://127.0.0.1:$PT_PORT $!")
    if [ "$TLS" = 1 ]; then
        RUST_LOG=warn "${server_cpu[@]}" "$CASCADE_BIN" server "${pt_args[@]}" \
            --listen "127.0.0.1:$PT_TLS_PORT" --data-dir "$work/pt-tls" >"$work/pt-tls.log" 2>&1 &
        pids+=($!)
        servers+=("cascade-pt-tls https://127.0.0.1:$PT_TLS_PORT $!")
    fi
fi

for s in "${servers[@]}"; do
    read -r _ base _ <<<"$s"
    for _ in $(seq 100); do curl -kfsS -o /dev/null "$base/repo/small.bin" 2>/dev/null && break; sleep 0.1; done
    curl -kfsS -o /dev/null "$base/repo/small.bin" || { echo "server at $base did not come up" >&2; cat "$work"/*.log >&2; exit 1; }
done

# CPU ticks (user + system, all threads) used so far by the given processes.
ticks() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat"))); done; echo "$t"; }
HZ=$(getconf CLK_TCK)

# One wrk run against URL with CONNS connections, the server being PIDS: prints
# "requests/s bytes/s server-CPU-µs-per-request server-CPU-s-per-GB".
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
        END { c = cpu / hz;
              printf "%.1f %.0f %.1f %.3f\n", rps, bps, (rps > 0 ? c * 1e6 / (rps * secs) : 0),
                     (bps > 0 ? c / (bps * secs / 1e9) : 0) }' <<<"$out"
}

# The median line of the lines on stdin (by requests/s).
median() { sort -n | awk '{ l[NR] = $0 } END { print l[int((NR + 1) / 2)] }'; }

echo "machine: $(uname -srm); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); $(nproc) CPUs online; $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
echo "versions: $(nginx -v 2>&1); wrk $(wrk -v 2>&1 | head -1 | awk '{ print $2 }'); $("$CASCADE_BIN" --version 2>/dev/null || echo cascade)"
echo "pinning: servers ${SERVER_CPUS:-unpinned} (nginx worker_processes $WORKERS), wrk ${LOAD_CPUS:-unpinned} (-t$THREADS); $DURATION per run, $REPEAT runs each, alternating"
echo "load before: $(uptime)"
printf "%-7s %-14s %12s %14s %11s %10s   %s\n" file server "requests/s" "bytes/s" "CPU us/req" "CPU s/GB" "runs (requests/s)"
for f in small large; do
    conns=$SMALL_CONNS
    [ "$f" = large ] && conns=$LARGE_CONNS
    label=$([ "$f" = small ] && echo "4KiB" || echo "20MiB")
    declare -A runs=()
    for _ in $(seq "$REPEAT"); do
        for s in "${servers[@]}"; do
            read -r name base pid <<<"$s"
            pidlist=("$pid")
            # shellcheck disable=SC2207 # one pid per word
            [ "$name" = nginx ] && pidlist+=($(pgrep -P "$pid"))
            line=$(measure "$base/repo/$f.bin" "$conns" "${pidlist[@]}")
            echo "  run: $label $name $line (load $(cut -d' ' -f1 /proc/loadavg))"
            runs[$name]+="$line"$'\n'
        done
    done
    declare -A med=()
    for s in "${servers[@]}"; do
        read -r name _ _ <<<"$s"
        med[$name]=$(printf '%s' "${runs[$name]}" | median)
        read -r rps bps cpu gb <<<"${med[$name]}"
        printf "%-7s %-14s %12s %14s %11s %10s   %s\n" "$label" "$name" "$rps" "$bps" "$cpu" "$gb" \
            "$(printf '%s' "${runs[$name]}" | cut -d' ' -f1 | tr '\n' ' ')"
    done
    read -r n_rps _ <<<"${med[nginx]}"
    for s in "${servers[@]}"; do
        read -r name _ _ <<<"$s"
        [ "$name" = nginx ] && continue
        read -r c_rps _ <<<"${med[$name]}"
        awk -v c="$c_rps" -v n="$n_rps" -v l="$label" -v s="$name" 'BEGIN { printf "%-7s %-14s ratio %.2f (%s/nginx, medians of requests/s, same run)\n", l, s, (n > 0 ? c / n : 0), s }'
    done
    unset runs med
done
if [ "$PER_THREAD" = 1 ]; then
    for s in "${servers[@]}"; do
        read -r name base _ <<<"$s"
        case $name in cascade-pt*) ;; *) continue ;; esac
        echo "$name connections accepted per listener: $(curl -kfsS "$base/metrics" | awk '/^cascade_accepted_connections_total/ { sub(/.*listener="/, ""); sub(/"}/, ""); printf "%s=%s ", $1, $2 }')"
    done
fi
echo "load after: $(uptime)"
