#!/usr/bin/env bash
# API fuzzing: schemathesis (pinned, from PyPI) against a running api built from this tree, with
# a valid token, driven by the committed openapi.json. Fails on any 5xx response and on any
# response that violates the documented schema (body, content type, headers).
#
# Needs DATABASE_URL (an admin connection: a throwaway database is created and dropped there) and
# psql. scripts/test.sh runs this after `cargo test`; it also runs on its own:
#   DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres scripts/schemathesis.sh
# Knobs: SCHEMATHESIS_MAX_EXAMPLES (default 50 per operation), SCHEMATHESIS_SEED (default fixed,
# so a failure reproduces; set another to explore).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"

SCHEMATHESIS_VERSION=4.32.5
MAX_EXAMPLES="${SCHEMATHESIS_MAX_EXAMPLES:-50}"
SEED="${SCHEMATHESIS_SEED:-20261129}"
# Everything a server error or a schema violation looks like, and any status the document does
# not list for the operation (openapi.json documents 415 wherever a JSON body is read).
CHECKS=not_a_server_error,status_code_conformance,response_schema_conformance,content_type_conformance,response_headers_conformance

log() { printf 'schemathesis.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

: "${DATABASE_URL:?DATABASE_URL must be set (scripts/test.sh sets it)}"
command -v psql >/dev/null 2>&1 || die "psql not found (apt-get install postgresql-client)"

# --- schemathesis, installed on first use -----------------------------------------------------
schemathesis_bin() {
    local py dir
    if command -v schemathesis >/dev/null 2>&1; then
        command -v schemathesis
        return
    fi
    py="$(command -v python3 || command -v python)" || return 1
    for dir in "$("$py" -c 'import sysconfig; print(sysconfig.get_path("scripts"))')" \
        "$("$py" -m site --user-base 2>/dev/null)/bin" /usr/local/bin; do
        if [[ -x "$dir/schemathesis" ]]; then
            echo "$dir/schemathesis"
            return
        fi
    done
    return 1
}

installed_version() {
    local bin
    bin="$(schemathesis_bin)" || return 0
    "$bin" --version 2>/dev/null | sed -n 's/.*version //p'
}

if [[ "$(installed_version)" != "$SCHEMATHESIS_VERSION" ]]; then
    log "installing schemathesis==$SCHEMATHESIS_VERSION (pip)"
    py="$(command -v python3 || command -v python)" || die "python3 is needed to install schemathesis"
    "$py" -m pip --version >/dev/null 2>&1 || die "pip is missing (apt-get install python3-pip)"
    export PIP_ROOT_USER_ACTION=ignore
    # Debian's system python is "externally managed" (PEP 668): retry with
    # --break-system-packages, as .ci/run does for just.
    "$py" -m pip install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION" 2>/dev/null ||
        "$py" -m pip install --quiet --disable-pip-version-check --break-system-packages \
            "schemathesis==$SCHEMATHESIS_VERSION"
    hash -r
    if command -v pyenv >/dev/null 2>&1; then pyenv rehash 2>/dev/null || true; fi
    [[ "$(installed_version)" == "$SCHEMATHESIS_VERSION" ]] ||
        die "schemathesis $SCHEMATHESIS_VERSION was installed but is not on PATH"
fi
SCHEMATHESIS="$(schemathesis_bin)"

# --- a throwaway database and the api on a free port ------------------------------------------
log "building the api"
cargo build -q --bin api
API="$ROOT/target/debug/api"

DB_NAME="wirehook_fuzz_$(date +%s)_$$"
case "$DATABASE_URL" in
*\?*) die "DATABASE_URL with query parameters is not supported here" ;;
esac
ADMIN_URL="$DATABASE_URL"
DB_URL="${ADMIN_URL%/*}/$DB_NAME"
WORK="$(mktemp -d)"
API_PID=""

cleanup() {
    local status=$?
    if [[ -n "$API_PID" ]]; then
        kill "$API_PID" 2>/dev/null || true
        wait "$API_PID" 2>/dev/null || true
    fi
    psql -X -q -d "$ADMIN_URL" -c "DROP DATABASE IF EXISTS \"$DB_NAME\" WITH (FORCE)" \
        >/dev/null 2>&1 || true
    if [[ $status -ne 0 && -f "$WORK/api.log" ]]; then
        log "api log (last 40 lines):"
        tail -n 40 "$WORK/api.log" >&2 || true
    fi
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT

psql -X -q -d "$ADMIN_URL" -c "CREATE DATABASE \"$DB_NAME\"" >/dev/null
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
export DATABASE_URL="$DB_URL"
export API_ADDR="127.0.0.1:$PORT"
export JWT_SECRET="schemathesis-$(date +%s%N)-jwt-secret"
export SIGNALWIRE_SIGNING_KEY=schemathesis-signalwire-key
export ELEVENLABS_WEBHOOK_SECRET=schemathesis-elevenlabs-secret
# Fuzzed configurations get test deliveries: keep them off private networks and short.
# Development (no provider IP allow lists, the development encryption key), but with the SSRF
# guard on, so fuzzed test deliveries cannot reach local services.
export WIREHOOK_ENV=development
export ALLOW_PRIVATE_TARGETS=false
export DELIVERY_TIMEOUT_SECS=2
export RUST_LOG="${RUST_LOG:-warn}"

"$API" migrate >"$WORK/migrate.log" 2>&1 || { cat "$WORK/migrate.log" >&2; die "migration failed"; }
TOKEN="$("$API" token --sub schemathesis --ttl 1h)"
"$API" serve >"$WORK/api.log" 2>&1 &
API_PID=$!
for _ in $(seq 1 100); do
    if python3 -c "import urllib.request,sys; urllib.request.urlopen('http://$API_ADDR/healthz', timeout=1)" 2>/dev/null; then
        break
    fi
    kill -0 "$API_PID" 2>/dev/null || die "the api exited at start"
    sleep 0.1
done

log "schemathesis $SCHEMATHESIS_VERSION against http://$API_ADDR ($MAX_EXAMPLES examples per operation, seed $SEED)"
# One worker: several threads trip a CPython 3.11 bug in hypothesis' lambda inspection
# ("AST constructor recursion depth mismatch"). Run in $WORK so nothing is left in the tree.
cd "$WORK"
"$SCHEMATHESIS" run "$ROOT/openapi.json" \
    --url "http://$API_ADDR" \
    --header "Authorization: Bearer $TOKEN" \
    --checks "$CHECKS" \
    --max-examples "$MAX_EXAMPLES" \
    --seed "$SEED" \
    --workers 1 \
    --request-timeout 10 \
    --generation-database none \
    --no-color
