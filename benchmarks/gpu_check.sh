#!/usr/bin/env bash
# The GPU check, in one command: what the CPU cannot prove about the CUDA path.
#
#   bash benchmarks/gpu_check.sh DATA_DIR OUT_DIR [--wheels DIR] [--cpu-dry-run]
#
# DATA_DIR holds the archives of ../shared/datasets (cifar10-jpeg.tar.gz,
# imagenette-224.tar.gz). On a machine with a CUDA GPU and this repository it:
#   1. installs only the packages that do not import, from wheels in --wheels DIR (no network;
#      without --wheels a missing package stops the check with its name);
#   2. runs the CUDA tests (the tests marked cuda, skipped on machines without one);
#   3. runs `crlc bench --device cuda --json`;
#   4. trains CIFAR-10 for 6 minutes with the paper preset's losses and ResNet-18
#      (benchmarks/cifar10_train.py: 32 px, batch 512, all 60,000 photos);
#   5. runs the quick preset on 4,000 Imagenette photos (benchmarks/quick_pipeline.py);
#   6. prints one table and leaves every result as JSON under OUT_DIR.
# About 10 minutes on one H100/H200. --cpu-dry-run runs the same steps on the CPU with tiny
# sizes (the bench at 16 px, 200 CIFAR photos for 0.2 minutes with the small CNN, 100
# Imagenette photos), so that the first GPU minute is not spent on a typo.
set -u -o pipefail

usage() { echo "usage: bash benchmarks/gpu_check.sh DATA_DIR OUT_DIR [--wheels DIR] [--cpu-dry-run]" >&2; exit 2; }
[ $# -ge 2 ] || usage
DATA=$(cd "$1" 2>/dev/null && pwd) || { echo "gpu_check: no folder $1" >&2; exit 2; }
mkdir -p "$2" && OUT=$(cd "$2" && pwd) || { echo "gpu_check: cannot make $2" >&2; exit 2; }
shift 2
WHEELS="" DRY=0
while [ $# -gt 0 ]; do
    case "$1" in
        --wheels) [ $# -ge 2 ] || usage; WHEELS=$2; shift 2 ;;
        --cpu-dry-run) DRY=1; shift ;;
        *) usage ;;
    esac
done
REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
cd "$REPO" || exit 2
STATUS="$OUT/status.tsv"
: >"$STATUS"
started=$(date +%s)

step() {  # step NAME COMMAND...: run it, log to OUT/NAME.log, record its status and seconds
    local name=$1; shift
    local t0=$(date +%s)
    echo "== $name: $*" >&2
    "$@" >"$OUT/$name.log" 2>&1
    local rc=$?
    printf '%s\t%s\t%s\n' "$name" "$rc" "$(( $(date +%s) - t0 ))" >>"$STATUS"
    tail -n 3 "$OUT/$name.log" >&2
    return 0
}

# 1. what does not import, from the carried wheels only
missing=""
for module in torch torchvision numpy scipy PIL faiss platformdirs pytest; do
    "$PY" -c "import $module" 2>/dev/null || missing="$missing $module"
done
if [ -n "$missing" ]; then
    if [ -z "$WHEELS" ]; then
        echo "gpu_check: these do not import:$missing (give --wheels DIR to install them)" >&2
        exit 1
    fi
    declare -A package=([PIL]=pillow [faiss]=faiss-cpu)
    for module in $missing; do
        "$PY" -m pip install --no-index --find-links "$WHEELS" "${package[$module]:-$module}" \
            >>"$OUT/install.log" 2>&1 || { echo "gpu_check: could not install $module" >&2; exit 1; }
    done
fi
"$PY" -c "import torch; print(torch.__version__, torch.cuda.is_available())" >"$OUT/torch.txt"

if [ "$DRY" = 1 ]; then
    DEVICE=cpu
    BENCH=(--device cpu --size 16 --batch 8 --steps 2 --warmup 1)
    CIFAR=(--minutes 0.2 --limit 200 --backbone small --batch-size 32 --device cpu)
    QUICK=(--limit 100)
    TESTS=(-m cuda)
else
    DEVICE=cuda
    "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" || {
        echo "gpu_check: torch sees no CUDA device here (use --cpu-dry-run on a CPU)" >&2; exit 1; }
    BENCH=(--device cuda)
    CIFAR=(--minutes 6 --backbone resnet18 --size 32 --batch-size 512 --device cuda)
    QUICK=(--limit 4000)
    TESTS=(-m cuda)
fi

# 2. the CUDA tests (the dry run: the same selection, which then skips them all)
step cuda_tests "$PY" -m pytest -q -p no:cacheprovider "${TESTS[@]}" tests/engine \
    --junitxml "$OUT/cuda_tests.xml"
# 3. the benchmark of the training step
step bench "$PY" -m crlc_engine.cli bench "${BENCH[@]}" --json
tail -n 1 "$OUT/bench.log" >"$OUT/bench.json"
# 4. CIFAR-10 with the paper's losses
step cifar "$PY" benchmarks/cifar10_train.py "$DATA/cifar10-jpeg.tar.gz" "${CIFAR[@]}" \
    --workdir "$OUT/work-cifar" --json "$OUT/cifar.json"
# 5. the quick preset on Imagenette
step quick "$PY" benchmarks/quick_pipeline.py "$DATA/imagenette-224.tar.gz" "${QUICK[@]}" \
    --skip-naive --workdir "$OUT/work-quick" --json "$OUT/quick.json"

# 6. one table, one JSON
"$PY" - "$OUT" "$DEVICE" "$(( $(date +%s) - started ))" <<'PYTHON'
import json, sys
from pathlib import Path

out, device, seconds = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])

def read(name):
    """A JSON file (indented or not), or the last line of one that holds a log before it."""
    try:
        text = (out / name).read_text().strip()
    except OSError:
        return None
    for candidate in (text, text.splitlines()[-1] if text else ""):
        try:
            return json.loads(candidate)
        except ValueError:
            continue
    return None

steps = [line.split("\t") for line in (out / "status.tsv").read_text().splitlines()]
bench, cifar, quick = read("bench.json"), read("cifar.json"), read("quick.json")
summary = {
    "device": device,
    "torch": (out / "torch.txt").read_text().split()[0],
    "seconds": seconds,
    "steps": {name: {"exit": int(rc), "seconds": int(s)} for name, rc, s in steps},
    "bench": bench,
    "cifar": None if cifar is None else {
        "acc_fraction": cifar["evaluate"]["chosen"]["acc"],
        "samples_per_s": cifar["train"]["samples_per_s"],
        "epochs": cifar["train"]["epochs"],
        "images": cifar["images"],
    },
    "quick": None if quick is None else {
        "seconds": quick["project"]["seconds"],
        "acc": quick["scores"]["acc"],
        "features_per_s": quick["features_per_s"],
        "peak_rss_mb": quick["peak_rss_mb"],
    },
}
(out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
rows = [("step", "exit", "seconds")] + [(n, rc, s) for n, rc, s in steps]
if bench:
    for key in ("ceiling_samples_per_s", "trainer_samples_per_s", "reference_samples_per_s",
                "trainer_vs_ceiling", "trainer_vs_reference", "peak_memory_bytes"):
        value = bench.get(key)
        rows.append((f"bench {key}", "", f"{value:.3f}" if isinstance(value, float) else value))
if summary["cifar"]:
    rows += [(f"cifar {k}", "", v) for k, v in summary["cifar"].items()]
if summary["quick"]:
    rows += [(f"quick {k}", "", v) for k, v in summary["quick"].items()]
for row in rows:
    print(f"{str(row[0]):34} {str(row[1]):>5} {str(row[2]):>14}")
print(json.dumps(summary))
PYTHON
failed=$(awk -F'\t' '$2 != 0 && $1 != "cuda_tests" {n++} END {print n+0}' "$STATUS")
tests_rc=$(awk -F'\t' '$1 == "cuda_tests" {print $2}' "$STATUS")
# pytest exits 5 when every selected test was skipped or none was selected (the dry run)
if [ "$failed" != 0 ] || { [ "$tests_rc" != 0 ] && [ "$tests_rc" != 5 ]; }; then
    echo "gpu_check: some steps failed (see $STATUS and the logs in $OUT)" >&2
    exit 1
fi
