#!/bin/sh
# Checks the OpenAPI description in openapi/: generated files up to date, oav's
# semantic and example validation, Azure's ARM lint rules, the traffic validator
# on known-good and known-bad traffic, a built sandboxd's replies to a scripted
# walk through the API, and any recorded traffic given.
#
# The server checked is $SANDBOXD_BIN, else build-test/sandboxd (what
# scripts/test.sh builds), with the sandbox-agent beside it when
# $SBX_DEFAULT_IMAGE names an image directory; without a server that check is
# skipped.
#
# Usage: scripts/check-openapi.sh [[--traffic] FILE.jsonl...]
# Each FILE is recorded traffic (the JSON lines the tests write when
# SBX_TRAFFIC_LOG is set); a missing or empty one is noted and skipped.
# Prints one line per check and "N passed, N failed" at the end; exits 1 if any
# check failed, 77 (skipped) when node or npm is missing.
set -u

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CONF="$ROOT/tests/conformance"
OPENAPI="$ROOT/openapi"
VERSIONS="2026-01-01 2026-07-01"

TRAFFIC=""
while [ $# -gt 0 ]; do
    case "$1" in
    --traffic) shift ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "check-openapi: unknown option: $1" >&2; exit 2 ;;
    *) case "$1" in /*) TRAFFIC="$TRAFFIC $1" ;; *) TRAFFIC="$TRAFFIC $PWD/$1" ;; esac; shift ;;
    esac
done

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "check-openapi: node and npm are needed (scripts/install-deps.sh --test)" >&2
    exit 77
fi

# Install the pinned tools once, and again whenever the lock file changes.
# Install scripts are off: none of the tools needs one.
stamp="$CONF/node_modules/.sbx-lock"
if ! cmp -s "$CONF/package-lock.json" "$stamp" 2>/dev/null; then
    echo "check-openapi: installing tools (npm ci) in tests/conformance" >&2
    if ! (cd "$CONF" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2); then
        echo "check-openapi: npm ci failed" >&2
        echo "0 passed, 1 failed"
        exit 1
    fi
    cp "$CONF/package-lock.json" "$stamp"
fi

passed=0
failed=0
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT

# run NAME EXPECTED_STATUS COMMAND...: one check; its output is shown only on failure.
run() {
    name=$1 want=$2
    shift 2
    (cd "$CONF" && "$@") >"$LOG" 2>&1
    got=$?
    if [ "$got" -eq "$want" ]; then
        passed=$((passed + 1))
        echo "ok   $name"
    else
        failed=$((failed + 1))
        echo "FAIL $name (exit $got, wanted $want)"
        sed 's/^/     /' "$LOG"
    fi
}

OAV="node -r ./offline.js node_modules/oav/dist/cli.js"

run "description is generated from openapi/generate.js" 0 node "$OPENAPI/generate.js" --check
for v in $VERSIONS; do
    run "oav validate-spec $v" 0 $OAV validate-spec "$OPENAPI/$v/sandboxGroups.json" --pretty
    run "oav validate-example $v" 0 $OAV validate-example "$OPENAPI/$v/sandboxGroups.json" --pretty
    run "oav validate-spec bundled/$v" 0 $OAV validate-spec "$OPENAPI/bundled/$v.json" --pretty
done
lint_files=""
for v in $VERSIONS; do lint_files="$lint_files $OPENAPI/$v/sandboxGroups.json"; done
# shellcheck disable=SC2086
run "ARM lint rules (openapi-validator rulesets)" 0 node lint-arm.js $lint_files
run "traffic validator accepts known-good traffic" 0 node validate-traffic.js --quiet testdata/good.jsonl

# Every line of bad.jsonl has one defect: each must be reported.
check_bad_traffic() {
    out=$(node validate-traffic.js --quiet testdata/bad.jsonl)
    status=$?
    echo "$out"
    lines=$(grep -c . testdata/bad.jsonl)
    reported=$(echo "$out" | grep -c '^MISMATCH')
    [ "$status" -eq 1 ] && [ "$reported" -eq "$lines" ] && return 0
    echo "expected exit 1 and $lines mismatches, got exit $status and $reported"
    return 1
}
run "traffic validator reports every defect in known-bad traffic" 0 check_bad_traffic

# Start the built server (no auth, loopback), walk the API with
# record-traffic.js and validate what it answered.
check_live_server() {
    data=$(mktemp -d)
    port=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
    # With its host agent and the default image the walk reaches exec, files
    # and the sandbox actions; without them those answer errors (checked too).
    agent="$(dirname "$SERVER")/sandbox-agent"
    if [ -x "$agent" ] && [ -d "${SBX_DEFAULT_IMAGE:-}" ]; then
        set -- --agent-bin "$agent" --default-image "$SBX_DEFAULT_IMAGE"
    else
        set -- --no-local-agent
    fi
    "$SERVER" --listen "127.0.0.1:$port" --data-dir "$data" --no-auth "$@" \
        >"$data/server.log" 2>&1 &
    pid=$!
    i=0
    until node -e 'require("net").connect(process.argv[1],"127.0.0.1").on("connect",()=>process.exit(0)).on("error",()=>process.exit(1))' "$port"; do
        i=$((i + 1))
        if [ $i -ge 100 ] || ! kill -0 $pid 2>/dev/null; then
            echo "sandboxd did not start listening on port $port:"
            cat "$data/server.log"
            kill $pid 2>/dev/null
            rm -rf "$data"
            return 1
        fi
        sleep 0.1
    done
    ok=0
    node record-traffic.js "http://127.0.0.1:$port" "$data/traffic.jsonl" &&
        node validate-traffic.js "$data/traffic.jsonl" || ok=1
    kill $pid
    wait $pid 2>/dev/null
    rm -rf "$data"
    return $ok
}
SERVER=${SANDBOXD_BIN:-$ROOT/build-test/sandboxd}
if [ -x "$SERVER" ]; then
    run "replies of $(basename "$SERVER") to a walk through the API" 0 check_live_server
else
    echo "note no built sandboxd at $SERVER: live replies not checked (set SANDBOXD_BIN)"
fi

for f in $TRAFFIC; do
    if [ ! -s "$f" ]; then
        echo "note recorded traffic $f is missing or empty: nothing to check"
        continue
    fi
    run "recorded traffic $(basename "$f")" 0 node validate-traffic.js "$f"
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
