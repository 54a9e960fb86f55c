#!/usr/bin/env bash
# `just test`: build the operator console (scripts/console.sh build: the api
# embeds it, and its generated types must match openapi.json), run the workspace
# tests against $DATABASE_URL, or against the project-local cluster that
# scripts/pg-local.sh starts when it is unset, then check that TypeScript and
# Python clients generated from openapi.json type-check against calls of every
# operation (scripts/client-check.sh), then the console's browser tests in
# Chromium against the real binaries (scripts/console.sh e2e), then fuzz the api
# with schemathesis (scripts/schemathesis.sh), then the short fault-injection run
# (`just chaos --events 1000`, on a throwaway cluster of its own on 127.0.0.1).
# Extra arguments go to `cargo test` (e.g. `just test -p api -- --nocapture`);
# with them, the client check, browser tests, fuzzing and chaos runs are skipped;
# WIREHOOK_CLIENTS=0, WIREHOOK_FUZZ=0 and WIREHOOK_CHAOS=0 skip one of them, and
# WIREHOOK_CONSOLE=0 skips the console's build and browser tests (a Rust-only
# run: the api then says at /console/ that it was built without it).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

DATABASE_URL="$(scripts/pg-local.sh ensure)"
export DATABASE_URL
if [[ "${WIREHOOK_CONSOLE:-1}" != 0 ]]; then
    echo "==> console build (scripts/console.sh build)" >&2
    scripts/console.sh build
fi
echo "==> cargo test --workspace (DATABASE_URL=$DATABASE_URL)" >&2
cargo test --workspace "$@"
if [[ $# -eq 0 && "${WIREHOOK_CLIENTS:-1}" != 0 ]]; then
    echo "==> generated clients type-check (scripts/client-check.sh)" >&2
    scripts/client-check.sh
fi
if [[ $# -eq 0 && "${WIREHOOK_CONSOLE:-1}" != 0 ]]; then
    echo "==> console browser tests (scripts/console.sh e2e)" >&2
    scripts/console.sh e2e
fi
if [[ $# -eq 0 && "${WIREHOOK_FUZZ:-1}" != 0 ]]; then
    echo "==> schemathesis against the api (scripts/schemathesis.sh)" >&2
    scripts/schemathesis.sh
fi
if [[ $# -eq 0 && "${WIREHOOK_CHAOS:-1}" != 0 ]]; then
    echo "==> chaos run, 1,000 events (just chaos --events 1000)" >&2
    target_dir="${CARGO_TARGET_DIR:-target}"
    cargo build -q -p wirehook-api -p wirehook-worker -p wirehook-harness --bins
    "$target_dir/debug/chaos" --events 1000 --bin-dir "$target_dir/debug" \
        --log-dir "$target_dir/chaos-test"
fi
