#!/usr/bin/env bash
# `just bench`: the benchmark. Installs pgbench when missing, builds the api, worker and
# bench binaries (release), finds a PostgreSQL and runs target/release/bench, which prints a
# table and writes bench/RESULTS.md. Extra arguments go to the bench binary, e.g.
#   just bench --only delivery --events 5000
#   just bench --only ingest,e2e --ingest-secs 5 --e2e-secs 5
#
# The server, in this order:
#   $DATABASE_URL   an operator's own server, used as it is (its settings are reported);
#   --fast-db       the project-local disposable cluster (fsync and synchronous_commit off):
#                   quick iteration only, labelled as such in the report;
#   otherwise       a throwaway cluster of the benchmark's own with production durability
#                   (fsync, synchronous_commit and full_page_writes on; max_connections 300,
#                   shared_buffers 256MB) in $target_dir/bench-pg on the first free port
#                   from 54330, stopped at the end: the headline figures are read there.
# CARGO overrides the cargo command (e.g. a wrapper that serialises builds).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

have_pgbench() {
    local p
    for p in $(command -v pgbench 2>/dev/null) /usr/lib/postgresql/*/bin/pgbench; do
        if [[ -x "$p" ]] && "$p" --version >/dev/null 2>&1; then
            return 0
        fi
    done
    return 1
}

apt_install() {
    local sudo=""
    if [[ "$(id -u)" -ne 0 ]]; then sudo="sudo"; fi
    $sudo apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >&2
}

if ! have_pgbench; then
    # Newer Debian/Ubuntu ship pgbench in the client package, older ones (PostgreSQL 15 on
    # Debian 12) with the server, which postgresql-contrib pulls in.
    echo "==> pgbench not found; installing postgresql-client" >&2
    apt_install postgresql-client
    if ! have_pgbench; then
        echo "==> pgbench still missing; installing postgresql-contrib" >&2
        apt_install postgresql-contrib
    fi
    have_pgbench || { echo "bench: cannot install pgbench" >&2; exit 1; }
fi

target_dir="${CARGO_TARGET_DIR:-target}"
echo "==> building api, worker and bench (release, $target_dir)" >&2
"${CARGO:-cargo}" build --release -p wirehook-api -p wirehook-worker -p wirehook-harness

fast_db=0
args=()
for arg in "$@"; do
    if [[ "$arg" == --fast-db ]]; then fast_db=1; else args+=("$arg"); fi
done

if [[ -n "${DATABASE_URL:-}" ]]; then
    DATABASE_URL="$(scripts/pg-local.sh ensure)"
elif [[ "$fast_db" == 1 ]]; then
    echo "==> --fast-db: the disposable local cluster (fsync off); not a headline run" >&2
    DATABASE_URL="$(scripts/pg-local.sh ensure)"
else
    # A cluster of its own, so the durable settings never reach `just dev`'s and `just test`'s;
    # on the first free port from 54330 (test clusters come and go on this machine).
    case "$target_dir" in /*) bench_pg="$target_dir/bench-pg" ;; *) bench_pg="$PWD/$target_dir/bench-pg" ;; esac
    port=54330
    while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
    export WIREHOOK_PG_DIR="$bench_pg" WIREHOOK_PG_PORT="$port"
    export WIREHOOK_PG_DURABLE=full WIREHOOK_PG_SHARED_BUFFERS=256MB
    trap 'scripts/pg-local.sh stop >/dev/null 2>&1 || true' EXIT
    DATABASE_URL="$(scripts/pg-local.sh ensure)"
fi
export DATABASE_URL
echo "==> benchmark against $DATABASE_URL" >&2
"$target_dir/release/bench" --repo-root . --bin-dir "$target_dir/release" \
    --log-dir "$target_dir/bench-logs" "${args[@]}"
