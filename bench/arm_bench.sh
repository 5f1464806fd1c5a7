#!/bin/bash
# Load test of sandboxd's ARM front end with wrk: GET of one sandbox group,
# and creates of new groups (PUT, unique names), for each HTTP threading
# mode (--threads 0 = a thread per connection, N = libmicrohttpd's epoll
# thread pool).  Several runs each; prints medians of req/s and of p99.
#
# Usage: bench/arm_bench.sh [BUILD_DIR]   (a Release build holding sandboxd)
# Environment: RUNS (3), DURATION (10s), CONNS (64), WRK_THREADS (2),
#   MODES ("0 4 8"), DATA_PARENT (where the data directories go; /tmp),
#   SANDBOXD_ARGS (extra flags, e.g. "--sync-full").
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin_dir=${1:-$here/../build-bench}
bin="$bin_dir/sandboxd"
[ -x "$bin" ] || { echo "usage: $0 BUILD_DIR (no sandboxd in $bin_dir)" >&2; exit 2; }
command -v wrk >/dev/null || { echo "$0: wrk is missing (apt-get install wrk)" >&2; exit 2; }

RUNS=${RUNS:-3}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
WRK_THREADS=${WRK_THREADS:-2}
MODES=${MODES:-"0 4 8"}
DATA_PARENT=${DATA_PARENT:-/tmp}
SUB=6a8f2c1e-4b7d-4e3a-9c5f-2d1e8b7a6c40
RG=bench
TOKEN=bench-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
GROUP_PATH="/subscriptions/$SUB/resourceGroups/$RG/providers/Microsoft.App/sandboxGroups"

work=$(mktemp -d "$DATA_PARENT/sbx-bench.XXXXXX")
server_pid=
stop_server() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=
    fi
}
trap 'stop_server; rm -rf "$work"' EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

start_server() { # start_server THREADS
    local dir="$work/data-$1"
    rm -rf "$dir"
    port=$(free_port)
    # shellcheck disable=SC2086
    "$bin" --listen "127.0.0.1:$port" --data-dir "$dir" --no-local-agent --auth-token "$TOKEN" \
        --threads "$1" ${SANDBOXD_ARGS:-} 2>"$work/server-$1.log" &
    server_pid=$!
    for _ in $(seq 1 200); do
        curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    echo "sandboxd did not start:" >&2
    tail "$work/server-$1.log" >&2
    exit 1
}

# wrk's numbers: "Requests/sec: N" and the 99% line of --latency, in ms.
parse_rps() { awk '/^Requests\/sec:/ {print $2}' "$1"; }
parse_p99() {
    awk '$1 == "99%" {
        v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v);
        if (u == "us") v /= 1000; else if (u == "s") v *= 1000; else if (u == "m") v *= 60000;
        printf "%.2f\n", v }' "$1"
}
parse_errors() {
    awk '/Non-2xx or 3xx responses:/ {n += $NF} /Socket errors:/ {n += 1} END {print n + 0}' "$1"
}
median() { sort -g | awk '{a[NR] = $1} END {if (NR % 2) print a[(NR + 1) / 2]; else printf "%.2f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

run_wrk() { # run_wrk NAME OUT [wrk args...]
    local name=$1 out=$2
    shift 2
    wrk -t "$WRK_THREADS" -c "$CONNS" -d "$DURATION" --latency \
        -H "Authorization: Bearer $TOKEN" "$@" >"$out" 2>&1 || { cat "$out" >&2; exit 1; }
    printf '  %-6s run: %10s req/s  p99 %7s ms  errors %s\n' "$name" "$(parse_rps "$out")" \
        "$(parse_p99 "$out")" "$(parse_errors "$out")"
}

summary=()
echo "sandboxd: $bin; $CONNS connections, $WRK_THREADS wrk threads, $DURATION x $RUNS runs; $(nproc) CPUs"
for mode in $MODES; do
    echo "--threads $mode"
    start_server "$mode"
    curl -fsS -X PUT -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" \
        -d '{"location":"westeurope","tags":{"bench":"get"}}' \
        "http://127.0.0.1:$port$GROUP_PATH/bench-get?api-version=2026-07-01" >/dev/null
    for i in $(seq 1 "$RUNS"); do
        run_wrk GET "$work/get-$mode-$i.txt" "http://127.0.0.1:$port$GROUP_PATH/bench-get?api-version=2026-07-01"
    done
    for i in $(seq 1 "$RUNS"); do
        run_wrk PUT "$work/put-$mode-$i.txt" -s "$here/put_groups.lua" "http://127.0.0.1:$port" \
            -- "$SUB" "$RG" "$mode$i"
    done
    stop_server
    for kind in get put; do
        rps=$(for f in "$work/$kind-$mode"-*.txt; do parse_rps "$f"; done | median)
        p99=$(for f in "$work/$kind-$mode"-*.txt; do parse_p99 "$f"; done | median)
        errs=$(for f in "$work/$kind-$mode"-*.txt; do parse_errors "$f"; done | paste -sd+ | bc)
        summary+=("$(printf '%-12s %-4s %12s %10s %8s' "--threads $mode" "${kind^^}" "$rps" "$p99" "$errs")")
    done
done

echo
printf '%-12s %-4s %12s %10s %8s\n' mode op "req/s (med)" "p99 ms" errors
printf '%s\n' "${summary[@]}"
