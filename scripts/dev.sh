#!/usr/bin/env bash
# `just dev`: build the operator console (embedded in the api) and api and
# worker, start a local PostgreSQL (unless DATABASE_URL is set), migrate, then
# run `api serve` and `worker` until Ctrl-C or until one of them exits.
# WIREHOOK_CONSOLE=0 skips the console (no Node.js needed).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bin="${CARGO_TARGET_DIR:-target}/debug"

if [[ "${WIREHOOK_CONSOLE:-1}" != 0 ]]; then
    echo "==> console build (scripts/console.sh build)" >&2
    # The API works without the console: say so loudly, but start anyway.
    scripts/console.sh build ||
        echo "==> WARNING: the console did not build (see above); /console/ will say it is missing" >&2
fi
echo "==> cargo build --bin api --bin worker" >&2
cargo build --bin api --bin worker

DATABASE_URL="$(scripts/pg-local.sh ensure)"
export DATABASE_URL
# shellcheck source=scripts/dev-env.sh
source scripts/dev-env.sh

echo "==> api migrate" >&2
"$bin/api" migrate

pids=()
# shellcheck disable=SC2317 # invoked through the EXIT trap
cleanup() {
    trap - EXIT INT TERM
    local pid i
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    # Give them 10 s to shut down gracefully, then force.
    for ((i = 0; i < 20; i++)); do
        local alive=0
        for pid in "${pids[@]}"; do
            if kill -0 "$pid" 2>/dev/null; then alive=1; fi
        done
        ((alive)) || break
        sleep 0.5
    done
    for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'echo >&2; echo "==> stopping api and worker" >&2; exit 0' INT
trap 'exit 143' TERM

echo "==> starting api serve and worker" >&2
"$bin/api" serve &
api_pid=$!
pids+=("$api_pid")
"$bin/worker" &
worker_pid=$!
pids+=("$worker_pid")

# Wait (bounded) until the API accepts TCP connections before printing the banner.
host="${API_ADDR%:*}"
port="${API_ADDR##*:}"
host="${host#[}"
host="${host%]}"
if [[ "$host" == 0.0.0.0 || -z "$host" ]]; then host=127.0.0.1; fi
for ((i = 0; i < 60; i++)); do
    if ! kill -0 "$api_pid" 2>/dev/null; then break; fi
    if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then break; fi
    sleep 0.5
done

token="$("$bin/api" token --sub dev --ttl 24h)" || token="(could not mint a token; see the error above)"

cat >&2 <<BANNER

  wirehook dev is running (Ctrl-C stops api and worker)
    Console:      http://$API_ADDR/console/   (paste the token below to sign in)
    API:          http://$API_ADDR
    Swagger UI:   http://$API_ADDR/docs
    DATABASE_URL: $DATABASE_URL
  dev token (24 h), paste into your shell (or the whole line into the console):
    export TOKEN=$token

BANNER

status=0
wait -n "$api_pid" "$worker_pid" || status=$?
if ! kill -0 "$api_pid" 2>/dev/null; then
    echo "==> api exited (status $status); stopping the worker" >&2
else
    echo "==> worker exited (status $status); stopping the api" >&2
fi
exit "$status"
