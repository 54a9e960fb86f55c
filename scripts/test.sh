#!/usr/bin/env bash
# `just test`: run the workspace tests against $DATABASE_URL, or against the
# project-local cluster that scripts/pg-local.sh starts when it is unset, then
# fuzz the api with schemathesis (scripts/schemathesis.sh).
# Extra arguments go to `cargo test` (e.g. `just test -p api -- --nocapture`);
# with them, or with WIREHOOK_FUZZ=0, the fuzzing run is skipped.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

DATABASE_URL="$(scripts/pg-local.sh ensure)"
export DATABASE_URL
echo "==> cargo test --workspace (DATABASE_URL=$DATABASE_URL)" >&2
cargo test --workspace "$@"
if [[ $# -eq 0 && "${WIREHOOK_FUZZ:-1}" != 0 ]]; then
    echo "==> schemathesis against the api (scripts/schemathesis.sh)" >&2
    scripts/schemathesis.sh
fi
