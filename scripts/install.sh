#!/usr/bin/env bash
# Install BoxCaseg and its pinned OpenMMLab stack into a virtual environment (default: .venv).
#
#   bash scripts/install.sh            # what `make demo` / `make test` run first; idempotent
#   PYTHON=python3.12 bash scripts/install.sh
#   BOXCASEG_VENV=/scratch/me/venv bash scripts/install.sh   # e.g. on a cluster
#
# Versions come from constraints.txt (the one place they are pinned). mmcv has no wheel for
# current torch, so it is compiled from its source archive, with ops, into a wheel kept in a
# per-user cache keyed by mmcv, torch, Python and CPU/CUDA (+ GPU arch); later installs reuse it.
# A second run on a set-up machine only checks a stamp and imports mmcv's ops: seconds.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${BOXCASEG_VENV:-$ROOT/.venv}
CONSTRAINTS=$ROOT/constraints.txt
CACHE_ROOT=${BOXCASEG_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/boxcaseg}
JOBS=${MAX_JOBS:-$(nproc 2>/dev/null || echo 2)}

log() { printf '[install] %s\n' "$*" >&2; }
die() { printf '[install] ERROR: %s\n' "$*" >&2; exit 1; }
pin() {  # pin NAME -> version pinned in constraints.txt
    local v
    v=$(sed -n "s/^$1==\([^[:space:]]*\).*$/\1/p" "$CONSTRAINTS")
    [ -n "$v" ] || die "no pin for $1 in $CONSTRAINTS"
    printf '%s' "$v"
}

# --- 1. a Python >= 3.11 ------------------------------------------------------------------
pick_python() {
    local candidates=("${PYTHON:-}" python3.12 python3.11 python3.13 python3)
    for py in "${candidates[@]}"; do
        [ -n "$py" ] || continue
        command -v "$py" >/dev/null 2>&1 || continue
        if "$py" -c 'import sys, venv; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            printf '%s' "$py"; return 0
        fi
    done
    return 1
}

# --- 2. the stamp: same inputs + a working mmcv means nothing to do ------------------------
stamp_of_inputs() {
    cat "$CONSTRAINTS" "$ROOT/pyproject.toml" "${BASH_SOURCE[0]}" | sha256sum | cut -c1-16
}
STAMP_FILE=$VENV/.boxcaseg-install-stamp
WANT_STAMP=$(stamp_of_inputs)
if [ -x "$VENV/bin/python" ] && [ "$(cat "$STAMP_FILE" 2>/dev/null)" = "$WANT_STAMP" ] \
    && "$VENV/bin/python" -c 'import mmcv._ext' >/dev/null 2>&1; then
    log "environment $VENV is up to date (stamp $WANT_STAMP); nothing to do"
    exit 0
fi

PY=$(pick_python) || die "need Python >= 3.11 with the venv module (set PYTHON=/path/to/python3.11)"
if [ ! -x "$VENV/bin/python" ]; then
    log "creating virtual environment $VENV with $($PY --version)"
    "$PY" -m venv "$VENV"
fi
VPY=$VENV/bin/python
pipi() { "$VPY" -m pip install --disable-pip-version-check -c "$CONSTRAINTS" "$@"; }

# --- 3. build tools and torch ----------------------------------------------------------------
log "installing build tools and torch $(pin torch) / torchvision $(pin torchvision)"
pipi -q --upgrade pip wheel "setuptools==$(pin setuptools)" ninja
pipi -q "torch==$(pin torch)" "torchvision==$(pin torchvision)"

# --- 4. mmcv, compiled once per (mmcv, torch, python, device) and cached ------------------------
MMCV_VERSION=$(pin mmcv)
read -r TORCH_VERSION PY_TAG TORCH_CUDA GPU_ARCH < <("$VPY" - <<'EOF'
import sys, torch
arch = "none"
if torch.cuda.is_available():
    arch = "%d.%d" % torch.cuda.get_device_capability(0)
print(torch.__version__.split("+")[0], "py%d%d" % sys.version_info[:2],
      torch.version.cuda or "none", arch)
EOF
)
if [ "${BOXCASEG_FORCE_CPU_OPS:-0}" != 1 ] && command -v nvcc >/dev/null 2>&1 \
    && [ "$GPU_ARCH" != none ] && [ "$TORCH_CUDA" != none ]; then
    DEVICE_KEY="cu${TORCH_CUDA//./}-sm${GPU_ARCH//./}"
    export FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST=$GPU_ARCH
    log "nvcc and a GPU (sm $GPU_ARCH) found: mmcv will be built with CUDA ops"
else
    DEVICE_KEY=cpu
    unset FORCE_CUDA || true
fi
WHEEL_DIR=$CACHE_ROOT/wheels/mmcv-$MMCV_VERSION-torch$TORCH_VERSION-$PY_TAG-$DEVICE_KEY
MMCV_WHEEL=$(ls "$WHEEL_DIR"/mmcv-*.whl 2>/dev/null | head -n1 || true)
if [ -n "$MMCV_WHEEL" ]; then
    log "reusing cached mmcv wheel $MMCV_WHEEL"
else
    BUILD=$(mktemp -d "${TMPDIR:-/tmp}/boxcaseg-mmcv.XXXXXX")
    trap 'rm -rf "$BUILD"' EXIT
    log "building mmcv $MMCV_VERSION with ops ($DEVICE_KEY, $JOBS jobs): about 7 minutes on 2 cores, once"
    # The source archive only; its metadata step imports torch, hence no build isolation.
    "$VPY" -m pip download -q --no-deps --no-binary :all: --no-build-isolation \
        "mmcv==$MMCV_VERSION" -d "$BUILD"
    tar -xzf "$BUILD"/mmcv-"$MMCV_VERSION".tar.gz -C "$BUILD"
    SRC=$BUILD/mmcv-$MMCV_VERSION
    # torch >= 2.10 headers need C++20; mmcv 2.1.0 forces C++14/17.
    sed -i -e 's/-std=c++14/-std=c++20/g' -e 's/-std=c++17/-std=c++20/g' "$SRC/setup.py"
    grep -q 'std=c++20' "$SRC/setup.py" || die "C++20 patch did not apply to $SRC/setup.py"
    # Without --no-build-isolation the build silently skips the ops (no mmcv._ext).
    ( cd "$SRC" && MMCV_WITH_OPS=1 MAX_JOBS=$JOBS "$VPY" -m pip wheel --no-deps \
        --no-build-isolation -w "$BUILD/dist" . )
    mkdir -p "$WHEEL_DIR"
    # Copy then rename, so a concurrent or interrupted install never sees half a wheel.
    built=$(ls "$BUILD"/dist/mmcv-*.whl | head -n1)
    cp "$built" "$WHEEL_DIR/.partial" && mv "$WHEEL_DIR/.partial" "$WHEEL_DIR/$(basename "$built")"
    MMCV_WHEEL=$WHEEL_DIR/$(basename "$built")
    log "cached $MMCV_WHEEL"
fi
pipi -q "$MMCV_WHEEL"

# --- 5. the rest of the stack and BoxCaseg itself (editable) ----------------------------------
log "installing mmengine, mmdet, mmsegmentation, snakemake and BoxCaseg (editable)"
pipi -q -e "$ROOT[openmmlab,workflow,dev]"

# --- 6. check, then stamp -----------------------------------------------------------------
"$VENV/bin/boxcaseg" doctor
echo "$WANT_STAMP" > "$STAMP_FILE"
log "done: activate with 'source $VENV/bin/activate'"
