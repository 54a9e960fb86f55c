#!/usr/bin/env bash
# The operator console (console/, served by the api at /console/).
#
#   scripts/console.sh build   npm ci (when package-lock.json changed), check that
#                              console/src/api/schema.ts is what openapi.json gives, type-check,
#                              build console/dist and print the gzipped bundle size. The api
#                              embeds console/dist when it is compiled, so run this before cargo
#                              (`just dev`, `just test` and CI do). Skipped when nothing it reads
#                              changed since the last build (a rebuild would make cargo rebuild
#                              the api for nothing).
#   scripts/console.sh e2e     the browser tests: Playwright driving Debian's Chromium
#                              (/usr/bin/chromium, or CHROMIUM) against the real api + worker
#                              (target/debug, built here) + PostgreSQL at DATABASE_URL (default
#                              postgres://postgres@127.0.0.1:5432/postgres), with a receiver on
#                              127.0.0.1. Screenshots go to target/console-screens/, logs to
#                              target/console-e2e/. Extra arguments go to `playwright test`.
#   scripts/console.sh gen     regenerate console/src/api/schema.ts from openapi.json.
#
# Needs Node.js (20.19+) and npm; the npm registry on the first run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
DIR="$ROOT/console"

log() { printf 'console.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

stamp_of() { cat "$@" | sha256sum | cut -d' ' -f1; }

npm_install() {
    command -v node >/dev/null 2>&1 || die "node not found (install Node.js 20.19 or newer)"
    command -v npm >/dev/null 2>&1 || die "npm not found"
    local stamp
    stamp="$(stamp_of "$DIR/package.json" "$DIR/package-lock.json")"
    if [[ "$(cat "$DIR/node_modules/.console-stamp" 2>/dev/null)" != "$stamp" ]]; then
        log "npm ci (console/package-lock.json)"
        (cd "$DIR" && npm ci --no-audit --no-fund --loglevel=error) >&2
        echo "$stamp" >"$DIR/node_modules/.console-stamp"
    fi
}

# Everything the build reads: sources, config, the lock file and the spec.
inputs_stamp() {
    (
        cd "$ROOT"
        find console/src console/public -type f -print0 | sort -z | xargs -0 sha256sum
        sha256sum console/index.html console/vite.config.ts console/tsconfig.json \
            console/package.json console/package-lock.json openapi.json
    ) | sha256sum | cut -d' ' -f1
}

build() {
    npm_install
    local stamp
    stamp="$(inputs_stamp)"
    if [[ -f "$DIR/dist/index.html" && "$(cat "$DIR/node_modules/.console-build-stamp" 2>/dev/null)" == "$stamp" ]]; then
        log "console/dist is up to date"
        return 0
    fi
    log "building console/dist"
    (cd "$DIR" && npm run --silent build) >&2
    echo "$stamp" >"$DIR/node_modules/.console-build-stamp"
}

e2e() {
    local chromium="${CHROMIUM:-/usr/bin/chromium}"
    [[ -x "$chromium" ]] || die "no Chromium at $chromium (apt-get install -y chromium, or set CHROMIUM)"
    command -v psql >/dev/null 2>&1 || die "psql not found (the tests create their database with it)"
    build
    log "cargo build --bin api --bin worker"
    cargo build -q --bin api --bin worker
    local start=$SECONDS
    (cd "$DIR" && CHROMIUM="$chromium" npx --no-install playwright test "$@")
    log "browser tests took $((SECONDS - start)) s; screenshots in ${CARGO_TARGET_DIR:-target}/console-screens/"
}

case "${1:-}" in
    build) build ;;
    e2e) shift; e2e "$@" ;;
    gen) npm_install; (cd "$DIR" && npm run --silent gen) ;;
    *) die "usage: scripts/console.sh build|e2e|gen" ;;
esac
