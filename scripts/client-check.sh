#!/usr/bin/env bash
# Client generation check: generates a TypeScript client (openapi-typescript + openapi-fetch) and
# a Python client (openapi-python-client, --fail-on-warning) from the committed openapi.json, and
# type-checks a file that calls every operation and reads typed fields of every response
# (clients/typescript/check.ts with `tsc --noEmit`, clients/python/check.py with
# `mypy --strict`). So a spec regression that breaks generated clients (an operation or schema a
# generator drops, a field that loses its type, an unusable parameter or body) fails CI, not a
# consumer. It also fails when an operation of the spec is not called by both check files.
#
# Tools are pinned and installed on first use, inside the tree (git-ignored): the npm packages of
# clients/typescript/package-lock.json with `npm ci` into clients/typescript/node_modules, and
# clients/python/requirements.txt into a venv made with the machine's python3 (>= 3.11) in
# .dev/client-check-venv. They are reinstalled when the lock file or requirements change. The
# clients are regenerated on every run (clients/*/generated/). Needs node and npm, python3, and
# the npm registry and PyPI on the first run.
#
# scripts/test.sh runs this before schemathesis (WIREHOOK_CLIENTS=0 skips it); it also runs on
# its own. Knobs: OPENAPI_JSON (the spec to check, default the committed openapi.json),
# CLIENT_CHECK_VENV (the venv's directory).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"

TS_DIR="$ROOT/clients/typescript"
PY_DIR="$ROOT/clients/python"
VENV="${CLIENT_CHECK_VENV:-$ROOT/.dev/client-check-venv}"
SPEC="${OPENAPI_JSON:-$ROOT/openapi.json}"

log() { printf 'client-check.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ -f "$SPEC" ]] || die "no OpenAPI document at $SPEC"
SPEC="$(cd "$(dirname "$SPEC")" && pwd)/$(basename "$SPEC")"
command -v python3 >/dev/null 2>&1 || die "python3 not found"

FAILED=()
fail() {
    FAILED+=("$1")
    log "FAILED: $1"
}

# Hash of the files an install comes from, kept beside the install to know when to redo it.
stamp_of() { cat "$@" | sha256sum | cut -d' ' -f1; }

# The spec's operations, one `METHOD path operationId` a line.
OPERATIONS="$(python3 - "$SPEC" <<'EOF'
import json, sys
doc = json.load(open(sys.argv[1]))
for path, item in doc.get("paths", {}).items():
    for method, op in item.items():
        if method in ("get", "put", "post", "delete", "patch", "head", "options", "trace"):
            print(method.upper(), path, op.get("operationId", "?"))
EOF
)" || die "cannot read $SPEC as an OpenAPI document"
log "checking $SPEC ($(wc -l <<<"$OPERATIONS") operations)"

# --- TypeScript: openapi-typescript + openapi-fetch, tsc --noEmit -----------------------------
typescript_check() {
    local stamp missing=()
    command -v node >/dev/null 2>&1 || { fail "TypeScript: node not found"; return; }
    command -v npm >/dev/null 2>&1 || { fail "TypeScript: npm not found"; return; }
    cd "$TS_DIR"
    stamp="$(stamp_of package.json package-lock.json)"
    if [[ "$(cat node_modules/.client-check-stamp 2>/dev/null)" != "$stamp" ]]; then
        log "TypeScript: npm ci (clients/typescript/package-lock.json)"
        if ! npm ci --no-audit --no-fund --loglevel=error >&2; then
            fail "TypeScript: npm ci"
            return
        fi
        echo "$stamp" >node_modules/.client-check-stamp
    fi

    log "TypeScript: openapi-typescript $(node_modules/.bin/openapi-typescript --version 2>/dev/null | tail -n 1)"
    rm -rf generated
    mkdir -p generated
    # redocly.yaml makes the spec's structural errors and dangling refs fail the generation.
    if ! node_modules/.bin/openapi-typescript "$SPEC" --redocly redocly.yaml \
        --output generated/schema.ts >&2; then
        fail "TypeScript: openapi-typescript could not generate types from the spec (see above)"
        return
    fi

    while read -r method path op_id; do
        grep -qF "client.$method(\"$path\"" check.ts || missing+=("$op_id ($method $path)")
    done <<<"$OPERATIONS"
    if [[ ${#missing[@]} -gt 0 ]]; then
        fail "TypeScript: check.ts does not call ${missing[*]}"
    fi

    log "TypeScript: tsc --noEmit (typescript $(node_modules/.bin/tsc --version | sed 's/Version //'))"
    if ! node_modules/.bin/tsc --noEmit -p tsconfig.json >&2; then
        fail "TypeScript: check.ts does not type-check against the generated types (tsc errors above)"
    fi
}

# --- Python: openapi-python-client --fail-on-warning, mypy --strict ---------------------------
python_venv() {
    local stamp py
    stamp="$(stamp_of "$PY_DIR/requirements.txt")"
    if [[ "$(cat "$VENV/.client-check-stamp" 2>/dev/null)" == "$stamp" ]] &&
        "$VENV/bin/python" -c '' 2>/dev/null; then
        return 0
    fi
    py="$(command -v python3)"
    "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
        { log "python3 is $("$py" -V 2>&1); openapi-python-client needs 3.11 or newer"; return 1; }
    log "Python: making $VENV and installing clients/python/requirements.txt"
    "$py" -m venv --clear "$VENV" >&2 ||
        { log "python3 -m venv failed (on Debian: apt-get install python3-venv)"; return 1; }
    PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV/bin/python" -m pip install --quiet --no-input \
        -r "$PY_DIR/requirements.txt" >&2 || return 1
    echo "$stamp" >"$VENV/.client-check-stamp"
}

python_check() {
    local gen="$PY_DIR/generated" fixed missing
    if ! python_venv; then
        fail "Python: installing the pinned tools into $VENV"
        return
    fi
    cd "$PY_DIR"

    log "Python: openapi-python-client $("$VENV/bin/openapi-python-client" --version | sed 's/.*version: //') generate --fail-on-warning"
    # The generator's post-hooks run ruff, which it finds on PATH.
    if ! PATH="$VENV/bin:$PATH" "$VENV/bin/openapi-python-client" generate --path "$SPEC" \
        --config config.yml --output-path "$gen" --overwrite --fail-on-warning >&2; then
        fail "Python: openapi-python-client reported warnings or errors on the spec (see above)"
        return
    fi

    # openapi-python-client 0.29.1 bug (openapi-generators/openapi-python-client#1451): an
    # operation with a required request body of several content types (the inbound ones:
    # JSON or form) is written with `body: ... | Unset = UNSET` without importing `Unset`, so
    # the module does not even import. Add the import; a no-op once the generator is fixed.
    fixed="$("$VENV/bin/python" - "$gen" <<'EOF'
import pathlib, re, sys
for path in sorted(pathlib.Path(sys.argv[1]).glob("*/api/*/*.py")):
    text = path.read_text()
    imports = re.search(r"^from \.\.\.types import ([^\n]*)$", text, re.M)
    if imports is None or "Unset" in imports.group(1).replace(" ", "").split(","):
        continue
    if re.search(r"\bUnset\b", text):
        names = imports.group(1) + ", Unset"
        path.write_text(text[: imports.start(1)] + names + text[imports.end(1) :])
        print(path.name)
EOF
)"
    if [[ -n "$fixed" ]]; then
        log "Python: added the missing 'Unset' import (openapi-python-client#1451) to ${fixed//$'\n'/ }"
    fi

    missing="$(python3 - "$gen" check.py "$OPERATIONS" <<'EOF'
import pathlib, re, sys
gen, check, operations = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]).read_text(), sys.argv[3]
modules = sorted(p.stem for p in gen.glob("*/api/*/*.py") if p.stem != "__init__")
called = {m for m in modules if re.search(rf"\b{m}\.(sync_detailed|sync)\(", check)}
for m in modules:
    if m not in called:
        print(f"check.py does not call {m}.sync_detailed or {m}.sync")
count = len(operations.splitlines())
if len(modules) != count:
    print(f"the client has {len(modules)} operation modules for the spec's {count} operations")
EOF
)"
    if [[ -n "$missing" ]]; then
        while read -r line; do fail "Python: $line"; done <<<"$missing"
    fi

    log "Python: mypy --strict ($("$VENV/bin/mypy" --version | cut -d' ' -f1-2))"
    # mypy.ini: --strict, --warn-unreachable, the generated package on mypy's path.
    if ! "$VENV/bin/mypy" --config-file mypy.ini --cache-dir "$VENV/mypy-cache" check.py >&2; then
        fail "Python: check.py does not type-check against the generated client (mypy errors above)"
    fi
}

# Each in a subshell (they cd); run both even when the first fails, so one run shows everything.
# The FAILED entries come back through a temp file.
RESULTS="$(mktemp)"
trap 'rm -f "$RESULTS"' EXIT
(typescript_check; printf '%s\n' "${FAILED[@]+"${FAILED[@]}"}" >>"$RESULTS") ||
    echo "TypeScript: the check stopped unexpectedly (see above)" >>"$RESULTS"
(python_check; printf '%s\n' "${FAILED[@]+"${FAILED[@]}"}" >>"$RESULTS") ||
    echo "Python: the check stopped unexpectedly (see above)" >>"$RESULTS"
mapfile -t FAILED < <(grep -v '^$' "$RESULTS" || true)

if [[ ${#FAILED[@]} -gt 0 ]]; then
    log "${#FAILED[@]} check(s) failed:"
    for f in "${FAILED[@]}"; do log "  - $f"; done
    exit 1
fi
log "ok: the TypeScript and Python clients generated from $(basename "$SPEC") type-check"
