#!/usr/bin/env bash
# `just test`: run the workspace tests against $DATABASE_URL, or against the
# project-local cluster that scripts/pg-local.sh starts when it is unset.
# Extra arguments go to `cargo test` (e.g. `just test -p api -- --nocapture`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

DATABASE_URL="$(scripts/pg-local.sh ensure)"
export DATABASE_URL
echo "==> cargo test --workspace (DATABASE_URL=$DATABASE_URL)" >&2
exec cargo test --workspace "$@"
