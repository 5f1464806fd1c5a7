#!/bin/bash
# Drives a real sandboxd over HTTPS with the Azure CLI's `az rest`: create,
# get, patch, list and delete a sandbox group, by absolute URL and, through a
# custom cloud whose resource manager is sandboxd, by relative URL.  `az
# rest` needs no `az login` when it is told to send our bearer token itself
# (--skip-authorization-header plus an Authorization header).
# Usage: tests/sdk/az.sh BUILD_DIR (the directory holding sandboxd)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin_dir=${1:-${SBX_BIN_DIR:-}}
if [ -z "$bin_dir" ] || [ ! -x "$bin_dir/sandboxd" ]; then
    echo "usage: $0 BUILD_DIR (the directory holding sandboxd)" >&2
    exit 2
fi
command -v az >/dev/null || { echo "$0: the Azure CLI (Debian package azure-cli) is missing" >&2; exit 2; }

work=$(mktemp -d)
server_pid=
cleanup() {
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    grep -v '"module":"access"' "$work/server.log" | tail -20 >&2 || true
    exit 1
}

"$here/certs.sh" "$work/tls"
"$bin_dir/sandboxd" --listen 127.0.0.1:0 --data-dir "$work/data" --no-local-agent \
    --tls-cert "$work/tls/server.pem" --tls-key "$work/tls/server.key" 2>"$work/server.log" &
server_pid=$!
port=
for _ in $(seq 1 200); do
    port=$(grep -o '(port [0-9]*)' "$work/server.log" | grep -o '[0-9]*' || true)
    [ -n "$port" ] && break
    kill -0 "$server_pid" 2>/dev/null || fail "sandboxd did not start"
    sleep 0.05
done
[ -n "$port" ] || fail "sandboxd did not report its port"
token=$(cat "$work/data/dev-token")

# The CLI's own state stays in the temporary directory; it trusts our CA
# through the variable Python's requests library reads.
export AZURE_CONFIG_DIR="$work/az" REQUESTS_CA_BUNDLE="$work/tls/ca.pem"
export AZURE_CORE_COLLECT_TELEMETRY=no AZURE_CORE_ONLY_SHOW_ERRORS=true AZURE_CORE_NO_COLOR=true
sub=3c0a4f62-9b1e-4d7a-8e55-0f2d6b9c1a77
base="https://127.0.0.1:$port"
group="/subscriptions/$sub/resourceGroups/az-rg/providers/Microsoft.App/sandboxGroups"
ver="api-version=2026-07-01"
auth=(--skip-authorization-header --headers "Authorization=Bearer $token")

azr() { az rest --only-show-errors "${auth[@]}" "$@"; }
expect() { # expect JQ_FILTER EXPECTED JSON
    local got
    got=$(jq -c "$1" <<<"$3") || fail "not JSON: $3"
    [ "$got" = "$2" ] || fail "$1: expected $2, got $got"
}

echo "az rest: PUT"
out=$(azr --method put --url "$base$group/cli-one?$ver" \
    --body '{"location":"westeurope","tags":{"owner":"cli"}}') || fail "PUT"
expect .name '"cli-one"' "$out"
expect .properties.provisioningState '"Succeeded"' "$out"
expect .tags '{"owner":"cli"}' "$out"

echo "az rest: GET"
out=$(azr --method get --url "$base$group/cli-one?$ver") || fail "GET"
expect .type '"Microsoft.App/sandboxGroups"' "$out"
expect .location '"westeurope"' "$out"

echo "az rest: PATCH"
out=$(azr --method patch --url "$base$group/cli-one?$ver" --body '{"tags":{"owner":"cli","env":"test"}}') ||
    fail "PATCH"
expect .tags '{"env":"test","owner":"cli"}' "$out"

echo "az rest: list"
azr --method put --url "$base$group/cli-two?$ver" --body '{"location":"westeurope"}' >/dev/null ||
    fail "PUT cli-two"
out=$(azr --method get --url "$base$group?$ver") || fail "list by resource group"
expect '[.value[].name] | sort' '["cli-one","cli-two"]' "$out"
out=$(azr --method get --url "$base/subscriptions/$sub/providers/Microsoft.App/sandboxGroups?$ver") ||
    fail "list by subscription"
expect '.value | length' '2' "$out"

echo "az rest: relative URLs through a custom cloud"
# Naming every Entra endpoint keeps `az cloud register` from asking the
# resource manager for its metadata (which sandboxd does not serve).
az cloud register -n sandboxd-test --endpoint-resource-manager "$base/" \
    --endpoint-active-directory https://login.invalid \
    --endpoint-active-directory-resource-id "$base/" \
    --endpoint-active-directory-graph-resource-id https://graph.invalid/ >/dev/null ||
    fail "az cloud register"
az cloud set -n sandboxd-test >/dev/null 2>&1 || fail "az cloud set"
out=$(azr --method get --url "$group/cli-two?$ver") || fail "GET by relative URL"
expect .name '"cli-two"' "$out"

echo "az rest: DELETE"
azr --method delete --url "$base$group/cli-one?$ver" >/dev/null || fail "DELETE"
azr --method delete --url "$group/cli-two?$ver" >/dev/null || fail "DELETE by relative URL"
if err=$(azr --method get --url "$base$group/cli-one?$ver" 2>&1); then
    fail "GET after DELETE succeeded: $err"
fi
grep -q ResourceNotFound <<<"$err" || fail "GET after DELETE: expected ResourceNotFound, got $err"
out=$(azr --method get --url "$base$group?$ver") || fail "list after DELETE"
expect '.value | length' '0' "$out"

echo "az rest: role assignments (Microsoft.Authorization)"
admin=(--skip-authorization-header --headers "Authorization=Bearer $(cat "$work/data/admin-token")")
rg_scope="/subscriptions/$sub/resourceGroups/az-rg"
authz="$base$rg_scope/providers/Microsoft.Authorization"
out=$(az rest --only-show-errors "${admin[@]}" --method get \
    --url "$authz/roleDefinitions?api-version=2022-04-01" \
    --url-parameters "\$filter=roleName eq 'Sandbox Executor'") || fail "roleDefinitions"
expect '[.value[].properties.roleName]' '["Sandbox Executor"]' "$out"
role_id=$(jq -r '.value[0].id' <<<"$out")
ra="$authz/roleAssignments/6e1d2c3b-4a59-4f68-9e7d-8c0b1a2f3e4d?api-version=2022-04-01"
out=$(az rest --only-show-errors "${admin[@]}" --method put --url "$ra" \
    --body "{\"properties\":{\"roleDefinitionId\":\"$role_id\",\"principalId\":\"cli-user\"}}") ||
    fail "PUT roleAssignment"
expect .properties.scope "\"$rg_scope\"" "$out"
if err=$(azr --method put --url "$ra" --body '{"properties":{"roleDefinitionId":"'"$role_id"'","principalId":"x"}}' 2>&1); then
    fail "a Contributor assigned a role"
fi
grep -q AuthorizationFailed <<<"$err" || fail "Contributor assigning: got $err"
az rest --only-show-errors "${admin[@]}" --method delete --url "$ra" >/dev/null || fail "DELETE roleAssignment"

echo "az rest: a wrong token is refused"
if err=$(az rest --only-show-errors --skip-authorization-header --headers "Authorization=Bearer nope" \
    --method get --url "$base$group?$ver" 2>&1); then
    fail "a wrong token was accepted"
fi
grep -q InvalidAuthenticationToken <<<"$err" || fail "wrong token: got $err"

kill "$server_pid"
status=0
wait "$server_pid" || status=$?
server_pid=
[ "$status" -eq 0 ] || fail "sandboxd exited with $status"
echo "az: all passed"
