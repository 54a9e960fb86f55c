#!/usr/bin/env bash
# Project-local PostgreSQL for development and tests (used by `just dev`,
# `just test` and `just migrate`).
#
# Usage:
#   scripts/pg-local.sh ensure   print a DATABASE_URL that answers (last line of
#                                stdout; everything else goes to stderr)
#   scripts/pg-local.sh status   say whether the local cluster exists / runs
#   scripts/pg-local.sh stop     stop the local cluster if it runs
#   scripts/pg-local.sh crash    stop it at once, as a crash would (pg_ctl -m immediate)
#   scripts/pg-local.sh standby  like ensure, but a new cluster is a hot standby of the one on
#                                127.0.0.1:$WIREHOOK_PG_PRIMARY_PORT (pg_basebackup -R)
#
# `ensure`:
#   * If DATABASE_URL is set, check that it answers and print it unchanged.
#   * Otherwise create (once) and start a throw-away cluster under
#     <repo>/.dev/pg (data in .dev/pg/data, unix socket in .dev/pg/sock, log in
#     .dev/pg/postgres.log), listening on 127.0.0.1:$WIREHOOK_PG_PORT (default
#     54329) with trust auth, and print postgres://postgres@127.0.0.1:<port>/postgres
#
# Environment:
#   DATABASE_URL        use this server instead of a local cluster
#   WIREHOOK_PG_PORT    port of the local cluster (default 54329)
#   WIREHOOK_PG_DIR     keep the cluster in this folder instead of .dev/pg (created if
#                       missing; no fallback). Tests and `just chaos` use it for clusters of
#                       their own that they stop and start (unset DATABASE_URL for them).
#   WIREHOOK_PG_DURABLE 1: create the cluster with synchronous_commit on (the default), so
#                       that a crash of the server (`crash`) loses no committed transaction;
#                       fsync stays off, which only matters if the machine itself goes down
#                       full: PostgreSQL's own durability defaults (fsync, full_page_writes
#                       and synchronous_commit on), as in production: for soak runs
#   WIREHOOK_PG_SHARED_BUFFERS  with WIREHOOK_PG_DURABLE=full: shared_buffers of a new
#                       cluster (e.g. 256MB, as `just bench` sets it)
#   WIREHOOK_PG_PRIMARY_PORT  for `standby`: the port of the primary to copy and follow; it
#                       must run with wal_level replica (the default of every cluster this
#                       script makes) and accept replication connections from 127.0.0.1
#                       (initdb's trust rules do)
#   WIREHOOK_PG_BINDIR  directory holding initdb/pg_ctl (default: newest of
#                       /usr/lib/postgresql/*/bin and whatever is on PATH)
#
# initdb and postgres refuse to run as root. When this script runs as root the
# cluster is owned by the `postgres` system user (created if missing) and all
# server commands run through `runuser -u postgres --`. If that user cannot
# reach <repo>/.dev/pg, the cluster lives in /tmp/wirehook-pg-<hash> instead.
#
# The cluster is tuned for speed, not durability (fsync=off): it is disposable.
# Remove it with `scripts/pg-local.sh stop && rm -rf .dev/pg`.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
PORT="${WIREHOOK_PG_PORT:-54329}"
PG_OWNER=postgres   # OS user that owns the cluster when we run as root
WAIT_SECS=30

log() { printf 'pg-local: %s\n' "$*" >&2; }
die() { printf 'pg-local: error: %s\n' "$*" >&2; exit 1; }

is_root() { [[ "$(id -u)" -eq 0 ]]; }

case "$PORT" in
    '' | *[!0-9]*) die "WIREHOOK_PG_PORT must be a port number, got '$PORT'" ;;
esac

# ---------------------------------------------------------------------------
# Locating the PostgreSQL binaries
# ---------------------------------------------------------------------------

# Major version of the initdb in directory $1 (e.g. 15), or nothing.
bindir_major() {
    local out
    out="$("$1/initdb" --version 2>/dev/null)" || return 0
    # "initdb (PostgreSQL) 15.8 (Debian 15.8-0+deb12u1)" -> 15
    out="${out#*) }"
    printf '%s\n' "${out%%[!0-9]*}"
}

# Candidate bin directories (having initdb, pg_ctl and postgres), one a line.
candidate_bindirs() {
    local d p
    {
        if [[ -n "${WIREHOOK_PG_BINDIR:-}" ]]; then
            printf '%s\n' "$WIREHOOK_PG_BINDIR"
        fi
        for d in /usr/lib/postgresql/*/bin; do
            [[ -d "$d" ]] && printf '%s\n' "$d"
        done
        if p="$(command -v initdb 2>/dev/null)"; then
            p="$(readlink -f "$p")"
            printf '%s\n' "${p%/*}"
        fi
    } | while IFS= read -r d; do
        if [[ -x "$d/initdb" && -x "$d/pg_ctl" && -x "$d/postgres" ]]; then
            printf '%s\n' "$d"
        fi
    done | awk '!seen[$0]++'
}

# Pick the bin directory: WIREHOOK_PG_BINDIR if set, else the one matching
# an existing cluster's version ($1, may be empty), else the newest version.
find_bindir() {
    local want="${1:-}" d v best="" best_v=-1
    if [[ -n "${WIREHOOK_PG_BINDIR:-}" ]]; then
        [[ -x "$WIREHOOK_PG_BINDIR/initdb" && -x "$WIREHOOK_PG_BINDIR/pg_ctl" ]] ||
            die "WIREHOOK_PG_BINDIR=$WIREHOOK_PG_BINDIR holds no initdb/pg_ctl"
        printf '%s\n' "$WIREHOOK_PG_BINDIR"
        return
    fi
    while IFS= read -r d; do
        v="$(bindir_major "$d")"
        [[ -n "$v" ]] || continue
        if [[ -n "$want" ]]; then
            if [[ "$v" == "$want" ]]; then
                printf '%s\n' "$d"
                return
            fi
        elif ((v > best_v)); then
            best="$d"
            best_v="$v"
        fi
    done < <(candidate_bindirs)
    if [[ -n "$want" ]]; then
        die "the local cluster in $DATA_DIR was created by PostgreSQL $want, whose binaries are not installed (apt-get install postgresql-$want), or remove that directory to start afresh"
    fi
    [[ -n "$best" ]] ||
        die "PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or in /usr/lib/postgresql/*/bin; install them with: apt-get install -y postgresql postgresql-contrib (contrib provides pgcrypto and hstore, which the migrations need), or set DATABASE_URL to an existing server"
    printf '%s\n' "$best"
}

# A client tool (pg_isready, psql): from the server bin dir if known, else PATH.
client_tool() {
    local name="$1" d
    if [[ -n "${BINDIR:-}" && -x "$BINDIR/$name" ]]; then
        printf '%s\n' "$BINDIR/$name"
        return 0
    fi
    if command -v "$name" >/dev/null 2>&1; then
        command -v "$name"
        return 0
    fi
    while IFS= read -r d; do
        if [[ -x "$d/$name" ]]; then
            printf '%s\n' "$d/$name"
            return 0
        fi
    done < <(candidate_bindirs)
    return 1
}

# ---------------------------------------------------------------------------
# Layout and privilege handling
# ---------------------------------------------------------------------------

# Run a server command as the cluster owner (from / so that an unreadable
# current directory does not produce warnings).
as_owner() {
    if is_root; then
        (cd / && runuser -u "$PG_OWNER" -- "$@")
    else
        (cd / && "$@")
    fi
}

ensure_owner_user() {
    is_root || return 0
    if ! id -u "$PG_OWNER" >/dev/null 2>&1; then
        log "creating system user '$PG_OWNER' to own the cluster (initdb refuses to run as root)"
        useradd --system --user-group --home-dir /var/lib/postgresql --no-create-home \
            --shell /bin/bash --comment 'PostgreSQL administrator' "$PG_OWNER" ||
            die "could not create the '$PG_OWNER' user"
    fi
    command -v runuser >/dev/null 2>&1 || die "runuser not found (package util-linux)"
}

PATH_HASH="$(printf '%s' "$REPO_ROOT" | sha256sum | cut -c1-12)"
FALLBACK_BASE="/tmp/wirehook-pg-$PATH_HASH"

# Sets BASE, DATA_DIR, SOCK_DIR, LOG_FILE. With $1 = create, also creates the
# directories (owned by the cluster owner when root); otherwise only looks.
resolve_layout() {
    local mode="${1:-look}" primary="$REPO_ROOT/.dev/pg"
    BASE="$primary"
    if [[ -n "${WIREHOOK_PG_DIR:-}" ]]; then
        BASE="$WIREHOOK_PG_DIR"
        if [[ "$mode" == create ]]; then
            mkdir -p "$BASE"
            if is_root; then
                chown "$PG_OWNER:" "$BASE"
                runuser -u "$PG_OWNER" -- test -w "$BASE" -a -x "$BASE" 2>/dev/null ||
                    die "user '$PG_OWNER' cannot reach WIREHOOK_PG_DIR=$BASE (make its parent folders traversable, e.g. chmod 755)"
            fi
        fi
    elif is_root; then
        if [[ -f "$FALLBACK_BASE/data/PG_VERSION" && ! -f "$primary/data/PG_VERSION" ]]; then
            BASE="$FALLBACK_BASE"
        elif [[ "$mode" == create && ! -f "$primary/data/PG_VERSION" ]]; then
            mkdir -p "$primary"
            chown "$PG_OWNER:" "$primary"
            chmod 0755 "$primary"
            if ! runuser -u "$PG_OWNER" -- test -w "$primary" -a -x "$primary" 2>/dev/null; then
                rmdir "$primary" 2>/dev/null || true
                rmdir "$REPO_ROOT/.dev" 2>/dev/null || true
                log "user '$PG_OWNER' cannot reach $primary (is the repo path traversable?);"
                log "using $FALLBACK_BASE for the cluster instead"
                BASE="$FALLBACK_BASE"
            fi
        fi
    fi
    DATA_DIR="$BASE/data"
    SOCK_DIR="$BASE/sock"
    LOG_FILE="$BASE/postgres.log"
    # Unix socket paths are limited to 107 bytes.
    if (( ${#SOCK_DIR} + ${#PORT} + 12 > 100 )); then
        SOCK_DIR="${FALLBACK_BASE}-sock"
    fi
    if [[ "$mode" == create ]]; then
        mkdir -p "$BASE" "$SOCK_DIR"
        if is_root; then
            chown "$PG_OWNER:" "$BASE" "$SOCK_DIR"
            if [[ -e "$LOG_FILE" ]]; then chown "$PG_OWNER:" "$LOG_FILE"; fi
        fi
        chmod 0755 "$BASE" "$SOCK_DIR"
    fi
}

cluster_exists() { [[ -f "$DATA_DIR/PG_VERSION" ]]; }

cluster_running() {
    cluster_exists || return 1
    as_owner "$BINDIR/pg_ctl" -D "$DATA_DIR" status >/dev/null 2>&1
}

# Port the running cluster listens on (line 4 of postmaster.pid).
running_port() {
    sed -n 4p "$DATA_DIR/postmaster.pid" 2>/dev/null || true
}

url_for_port() { printf 'postgres://postgres@127.0.0.1:%s/postgres\n' "$1"; }

# 0 = accepting, 1 = rejecting, 2 = no response, 3 = no attempt (pg_isready).
isready_code() {
    local rc=0
    "$PG_ISREADY" -q -h 127.0.0.1 -p "$1" -t 2 >/dev/null 2>&1 || rc=$?
    printf '%s\n' "$rc"
}

wait_ready() {
    local port="$1" i
    for ((i = 0; i < WAIT_SECS * 2; i++)); do
        if [[ "$(isready_code "$port")" == 0 ]]; then
            return 0
        fi
        sleep 0.5
    done
    return 1
}

tail_log() {
    if [[ -f "$LOG_FILE" ]]; then
        log "last lines of $LOG_FILE:"
        tail -n 20 "$LOG_FILE" >&2 || true
    fi
}

# Settings applied at every start, so WIREHOOK_PG_PORT changes take effect.
write_runtime_conf() {
    local sock_q="${SOCK_DIR//\'/\'\'}"
    cat >"$DATA_DIR/wirehook.conf" <<EOF
# Written by scripts/pg-local.sh at every start; do not edit.
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$sock_q'
EOF
    if is_root; then chown "$PG_OWNER:" "$DATA_DIR/wirehook.conf"; fi
}

init_cluster() {
    log "creating a PostgreSQL $(bindir_major "$BINDIR") cluster in $DATA_DIR"
    mkdir -p "$DATA_DIR"
    if is_root; then chown "$PG_OWNER:" "$DATA_DIR"; fi
    chmod 0700 "$DATA_DIR"
    if ! as_owner "$BINDIR/initdb" -D "$DATA_DIR" -U postgres --auth=trust \
        --encoding=UTF8 --no-locale --no-instructions >"$BASE/initdb.log" 2>&1; then
        cat "$BASE/initdb.log" >&2 || true
        die "initdb failed (output above)"
    fi
    if [[ "${WIREHOOK_PG_DURABLE:-0}" == full ]]; then
        cat >>"$DATA_DIR/postgresql.conf" <<'EOF'

# --- wirehook throwaway cluster (scripts/pg-local.sh, WIREHOOK_PG_DURABLE=full) ---
# Production durability: fsync, full_page_writes and synchronous_commit keep their defaults (on).
max_connections = 300
EOF
        if [[ -n "${WIREHOOK_PG_SHARED_BUFFERS:-}" ]]; then
            printf "shared_buffers = '%s'\n" "$WIREHOOK_PG_SHARED_BUFFERS" >>"$DATA_DIR/postgresql.conf"
        fi
        printf "include_if_exists = 'wirehook.conf'\n" >>"$DATA_DIR/postgresql.conf"
        return
    fi
    if [[ "${WIREHOOK_PG_DURABLE:-0}" == 1 ]]; then
        cat >>"$DATA_DIR/postgresql.conf" <<'EOF'

# --- wirehook throwaway cluster (scripts/pg-local.sh, WIREHOOK_PG_DURABLE=1) ---
# A commit is written to the operating system before it is acknowledged, so a crash of the
# server (pg_ctl -m immediate) loses no committed transaction; only a crash of the machine
# could (fsync off: the data is disposable).
fsync = off
full_page_writes = off
max_connections = 300
include_if_exists = 'wirehook.conf'
EOF
        return
    fi
    cat >>"$DATA_DIR/postgresql.conf" <<'EOF'

# --- wirehook local dev/test cluster (scripts/pg-local.sh) ---
# Disposable data: trade durability for speed.
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 300
include_if_exists = 'wirehook.conf'
EOF
}

start_cluster() {
    local code
    code="$(isready_code "$PORT")"
    if [[ "$code" == 0 || "$code" == 1 ]]; then
        die "another server already listens on 127.0.0.1:$PORT; set WIREHOOK_PG_PORT to a free port"
    fi
    write_runtime_conf
    log "starting the local cluster on 127.0.0.1:$PORT (log: $LOG_FILE)"
    if ! as_owner "$BINDIR/pg_ctl" -D "$DATA_DIR" -l "$LOG_FILE" -w -t "$WAIT_SECS" start >/dev/null 2>&1; then
        tail_log
        die "the local cluster did not start (see $LOG_FILE)"
    fi
}

check_extensions() {
    local psql n
    psql="$(client_tool psql)" || return 0
    n="$("$psql" -X -q -At -d "$1" -c \
        "select count(*) from pg_available_extensions where name in ('pgcrypto','hstore')" 2>/dev/null)" || return 0
    if [[ "$n" != 2 ]]; then
        log "warning: the pgcrypto and hstore extensions are not available; the migrations need them:"
        log "         apt-get install -y postgresql-contrib"
    fi
}

# ---------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------

ensure_external() {
    local url="$DATABASE_URL" tool out rc=0 checked=0
    if tool="$(client_tool pg_isready)"; then
        checked=1
        out="$("$tool" -d "$url" -t 5 2>&1)" || rc=$?
        if [[ "$rc" -ne 0 ]]; then
            die "DATABASE_URL does not answer (pg_isready: ${out//$'\n'/ })"
        fi
    fi
    if tool="$(client_tool psql)"; then
        checked=1
        rc=0
        out="$("$tool" -X -q -At -d "$url" -c 'select 1' 2>&1)" || rc=$?
        if [[ "$rc" -ne 0 ]]; then
            die "cannot connect to DATABASE_URL: ${out//$'\n'/ }"
        fi
    fi
    if [[ "$checked" == 0 ]]; then
        log "warning: neither pg_isready nor psql found; not checking DATABASE_URL"
    fi
    printf '%s\n' "$url"
}

cmd_ensure() {
    if [[ -n "${DATABASE_URL:-}" ]]; then
        BINDIR=""
        ensure_external
        return
    fi
    ensure_owner_user
    resolve_layout create
    local want=""
    if cluster_exists; then want="$(<"$DATA_DIR/PG_VERSION")"; fi
    BINDIR="$(find_bindir "$want")"
    PG_ISREADY="$(client_tool pg_isready)" || die "pg_isready not found (apt-get install -y postgresql-client)"

    local port="$PORT"
    if cluster_running; then
        port="$(running_port)"
        if [[ "$port" != "$PORT" ]]; then
            log "warning: the local cluster already runs on port $port (requested $PORT); run 'scripts/pg-local.sh stop' to change it"
        fi
    else
        if ! cluster_exists; then init_cluster; fi
        start_cluster
    fi
    if ! wait_ready "$port"; then
        tail_log
        die "the local cluster does not accept connections on 127.0.0.1:$port after ${WAIT_SECS}s"
    fi
    local url
    url="$(url_for_port "$port")"
    check_extensions "$url"
    log "local cluster ready on 127.0.0.1:$port (data: $DATA_DIR)"
    printf '%s\n' "$url"
}

# Stops the cluster with pg_ctl mode $1 (fast: clients are disconnected and a checkpoint is
# written; immediate: the server processes exit at once and the next start recovers from WAL).
cmd_stop() {
    local mode="${1:-fast}"
    resolve_layout look
    if ! cluster_exists; then
        log "no local cluster (nothing in $DATA_DIR)"
        return 0
    fi
    BINDIR="$(find_bindir "$(<"$DATA_DIR/PG_VERSION")")"
    if ! cluster_running; then
        log "local cluster is not running"
        return 0
    fi
    as_owner "$BINDIR/pg_ctl" -D "$DATA_DIR" -m "$mode" -w -t "$WAIT_SECS" stop >/dev/null 2>&1 || {
        tail_log
        die "could not stop the local cluster in $DATA_DIR"
    }
    log "local cluster stopped ($mode)"
}

cmd_status() {
    resolve_layout look
    if ! cluster_exists; then
        log "no local cluster (would be created in $DATA_DIR)"
        return 3
    fi
    BINDIR="$(find_bindir "$(<"$DATA_DIR/PG_VERSION")")"
    if cluster_running; then
        local port
        port="$(running_port)"
        log "running: PostgreSQL $(<"$DATA_DIR/PG_VERSION") on 127.0.0.1:$port, data in $DATA_DIR"
        log "url: $(url_for_port "$port")"
        return 0
    fi
    log "stopped: PostgreSQL $(<"$DATA_DIR/PG_VERSION") cluster in $DATA_DIR ('scripts/pg-local.sh ensure' starts it)"
    return 3
}

# A streaming hot standby of the primary on 127.0.0.1:$WIREHOOK_PG_PRIMARY_PORT: the first
# time, its data folder is a base backup of the primary whose -R writes standby.signal and
# primary_conninfo; every time, it is started as `ensure` starts a cluster (its own port and
# socket folder, 127.0.0.1 only).
cmd_standby() {
    local primary="${WIREHOOK_PG_PRIMARY_PORT:-}"
    case "$primary" in
        '' | *[!0-9]*) die "standby needs WIREHOOK_PG_PRIMARY_PORT (the primary's port), got '$primary'" ;;
    esac
    [[ -z "${DATABASE_URL:-}" ]] || die "standby makes a cluster of its own: unset DATABASE_URL"
    ensure_owner_user
    resolve_layout create
    if ! cluster_exists; then
        BINDIR="$(find_bindir "")"
        mkdir -p "$DATA_DIR"
        if is_root; then chown "$PG_OWNER:" "$DATA_DIR"; fi
        chmod 0700 "$DATA_DIR"
        log "copying the primary on 127.0.0.1:$primary into $DATA_DIR (pg_basebackup -R)"
        if ! as_owner "$BINDIR/pg_basebackup" -h 127.0.0.1 -p "$primary" -U postgres \
            -D "$DATA_DIR" -R -X stream -c fast >"$BASE/basebackup.log" 2>&1; then
            cat "$BASE/basebackup.log" >&2 || true
            die "pg_basebackup from 127.0.0.1:$primary failed (output above)"
        fi
    fi
    cmd_ensure
}

usage() {
    cat >&2 <<'EOF'
usage: scripts/pg-local.sh ensure|status|stop|crash|standby
  ensure  print a DATABASE_URL that answers ($DATABASE_URL if set, else a
          project-local cluster in ${WIREHOOK_PG_DIR:-.dev/pg} on 127.0.0.1:${WIREHOOK_PG_PORT:-54329})
  status  say whether the local cluster exists and runs (exit 0 if it runs)
  stop    stop the local cluster if it runs
  crash   stop it at once (pg_ctl -m immediate), as a crash would
  standby ensure a hot standby of the cluster on 127.0.0.1:$WIREHOOK_PG_PRIMARY_PORT
EOF
}

case "${1:-}" in
    ensure) cmd_ensure ;;
    stop) cmd_stop fast ;;
    crash) cmd_stop immediate ;;
    status) cmd_status ;;
    standby) cmd_standby ;;
    -h | --help | help) usage ;;
    *)
        usage
        exit 2
        ;;
esac
