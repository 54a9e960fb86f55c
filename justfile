# wirehook developer tasks. `just` alone lists them.
# The local PostgreSQL lives in .dev/pg (see scripts/pg-local.sh); set
# DATABASE_URL to use another server instead.

set shell := ["bash", "-euo", "pipefail", "-c"]
set positional-arguments

# List the recipes
default:
    @{{ just_executable() }} --justfile {{ quote(justfile()) }} --list

# Build, migrate and run api + worker against a local PostgreSQL; prints the URLs and a dev token
dev:
    scripts/dev.sh

# Run `cargo test --workspace` against a local PostgreSQL (extra args go to cargo test)
test *args:
    scripts/test.sh "$@"

# Benchmark on a durable throwaway cluster (`--fast-db`: the disposable dev cluster), release build: prints a table, writes bench/RESULTS.md (e.g. `just bench --only delivery --events 5000`)
bench *args:
    scripts/bench.sh "$@"

# Fault-injection run: real api + 3 workers on a throwaway PostgreSQL (127.0.0.1), failing,
# hanging and resetting receivers, worker SIGKILLs, one PostgreSQL crash, one api restart;
# 10,000 events unless `--events N` is given. Exits non-zero if anything is lost.
chaos *args:
    cargo build -q -p wirehook-api -p wirehook-worker -p wirehook-harness --bins
    "${CARGO_TARGET_DIR:-target}/debug/chaos" --bin-dir "${CARGO_TARGET_DIR:-target}/debug" \
        --log-dir "${CARGO_TARGET_DIR:-target}/chaos" "$@"

# Write the OpenAPI document to openapi.json and regenerate the console's types from it
openapi:
    cargo run -q --bin api -- openapi > openapi.json.tmp || { rm -f openapi.json.tmp; exit 1; }
    mv openapi.json.tmp openapi.json
    @echo "wrote openapi.json" >&2
    scripts/console.sh gen || echo "could not regenerate console/src/api/schema.ts (needs Node.js and npm): run scripts/console.sh gen" >&2

# The operator console: `just console build`, `just console e2e` (browser tests), `just console gen`
console *args:
    scripts/console.sh "$@"

# Apply the migrations to the local PostgreSQL (or $DATABASE_URL)
migrate:
    DATABASE_URL="$(scripts/pg-local.sh ensure)"; export DATABASE_URL; cargo run -q --bin api -- migrate

# Print a 24 h dev JWT for subject "dev" (JWT_SECRET defaults to the dev value)
token:
    source scripts/dev-env.sh; cargo run -q --bin api -- token --sub dev --ttl 24h

# Check formatting and run clippy with warnings as errors
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Stop the local PostgreSQL started by dev/test/migrate
db-stop:
    scripts/pg-local.sh stop

# Soak run (issue 14), release build: real api + 2 workers on a throwaway PostgreSQL with
# production durability, half the measured capacity for 30 minutes (`--minutes N`, `--rate R`),
# 5% failing and 1% hanging deliveries, retention purging every minute; writes bench/SOAK.md and
# bench/soak.svg. Exits non-zero if an event is lost or a resource keeps growing.
soak *args:
    "${CARGO:-cargo}" build -q --release -p wirehook-api -p wirehook-worker -p wirehook-harness --bins
    "${CARGO_TARGET_DIR:-target}/release/soak" --bin-dir "${CARGO_TARGET_DIR:-target}/release" \
        --log-dir "${CARGO_TARGET_DIR:-target}/soak" "$@"
