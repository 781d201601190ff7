#!/usr/bin/env bash
# Smoke test of the PyInstaller bundle (build it first: bash packaging/pyinstaller/build.sh).
#
#   bash packaging/smoke_test.sh [BUNDLE_DIR]      (default: dist/crlc-organizer)
#
# Runs the built programs only (no Python of the build is used; python3 of the system only
# writes the test images), with a private HOME and XDG folders in a temporary folder, offscreen:
#   1. the window starts offscreen (the start screen, rendered to a PNG: the time this takes is
#      reported as the time to first window; with Xvfb and xdotool installed, the time until a
#      real X11 window is mapped is reported too);
#   2. the window opens a generated folder of 200 images (and scans it, in worker processes);
#   3. `crlc train --preset quick` groups them (EfficientNet-Lite0's bundled weights, offline);
#   4. `crlc export` copies them into one folder per group;
#   5. the window writes a screenshot of the groups.
# It prints the bundle's size and the time to first window, and exits non-zero on any failure.
#
# Environment: SMOKE_KEEP=1 (keep the temporary folder), SMOKE_OUT (copy the screenshots there).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUNDLE="$(cd "${1:-$ROOT/dist/crlc-organizer}" && pwd)"
GUI="$BUNDLE/crlc-organizer"
CLI="$BUNDLE/crlc"
for exe in "$GUI" "$CLI"; do
    [ -x "$exe" ] || { echo "FAIL: $exe missing: build first (bash packaging/pyinstaller/build.sh)" >&2; exit 1; }
done

TMP="$(mktemp -d "${TMPDIR:-/tmp}/crlc-smoke.XXXXXX")"
GUI_PID=""
XVFB_PID=""
cleanup() {
    [ -n "$GUI_PID" ] && kill "$GUI_PID" 2>/dev/null || true
    [ -n "$XVFB_PID" ] && kill "$XVFB_PID" 2>/dev/null || true
    if [ "${SMOKE_KEEP:-0}" = 1 ]; then echo "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

# Nothing of the user's is read or written: private home, settings, data, cache, logs.
export HOME="$TMP/home"
export XDG_CONFIG_HOME="$HOME/.config" XDG_DATA_HOME="$HOME/.local/share"
export XDG_CACHE_HOME="$HOME/.cache" XDG_STATE_HOME="$HOME/.local/state"
export XDG_RUNTIME_DIR="$TMP/runtime"
mkdir -p "$HOME" "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
unset CRLC_WORKSPACE PYTHONPATH PYTHONHOME
export QT_QPA_PLATFORM=offscreen
PHOTOS="$TMP/photos" WS="$TMP/workspace" EXPORT="$TMP/export"

fail() { echo "FAIL: $*" >&2; exit 1; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

echo "== bundle $BUNDLE"
SIZE="$(du -sh "$BUNDLE" | cut -f1)"
echo "bundle size: $SIZE"
[ ! -e "$BUNDLE/_internal/torchvision" ] || echo "note: this bundle contains torchvision (a full bundle)"

echo "== 0. 200 test images (4 kinds x 50, 64 px PNG)"
python3 - "$PHOTOS" <<'EOF'
import random, struct, sys, zlib
from pathlib import Path

def png(path, pixels, w, h):
    raw = b"".join(b"\x00" + bytes(pixels[y * w * 3:(y + 1) * w * 3]) for y in range(h))
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))

S = 64
inside = {
    "disc": lambda x, y, c, r: (x - c[0]) ** 2 + (y - c[1]) ** 2 < r * r,
    "square": lambda x, y, c, r: abs(x - c[0]) < r and abs(y - c[1]) < r,
    "bar": lambda x, y, c, r: abs(y - c[1]) < r / 3,
    "cross": lambda x, y, c, r: (abs(x - c[0]) < r / 4 or abs(y - c[1]) < r / 4)
    and abs(x - c[0]) < r and abs(y - c[1]) < r,
}
colours = {"disc": (220, 60, 40), "square": (40, 90, 220), "bar": (40, 170, 70), "cross": (230, 200, 40)}
rng = random.Random(0)
root = Path(sys.argv[1])
for kind, test in inside.items():
    (root / kind).mkdir(parents=True, exist_ok=True)
    for n in range(50):
        c = (rng.randint(20, 44), rng.randint(20, 44))
        r = rng.randint(10, 18)
        bg = [rng.randint(0, 90) for _ in range(3)]
        fg = [max(0, min(255, v + rng.randint(-30, 30))) for v in colours[kind]]
        px = []
        for y in range(S):
            for x in range(S):
                px += fg if test(x, y, c, r) else [max(0, min(255, v + rng.randint(-12, 12))) for v in bg]
        png(root / kind / f"{kind}_{n:03d}.png", px, S, S)
EOF
COUNT="$(find "$PHOTOS" -name '*.png' | wc -l)"
[ "$COUNT" = 200 ] || fail "expected 200 test images, wrote $COUNT"

echo "== 1. the window starts offscreen"
"$CLI" --version >/dev/null || fail "crlc --version"
t0="$(now)"
"$GUI" --screenshot "$TMP/start.png" --state start 2>"$TMP/start.err" || { cat "$TMP/start.err" >&2; fail "start screen"; }
FIRST_WINDOW="$(secs "$t0" "$(now)")"
[ -s "$TMP/start.png" ] || fail "no start screenshot"
if grep -q "not found in" "$TMP/start.err"; then cat "$TMP/start.err" >&2; fail "icons missing in the bundle"; fi
echo "time to first window (offscreen start screen rendered and saved, first run): ${FIRST_WINDOW} s"
t0="$(now)"
"$GUI" --screenshot "$TMP/start2.png" --state start 2>/dev/null || fail "start screen (2nd)"
FIRST_WINDOW_WARM="$(secs "$t0" "$(now)")"
echo "time to first window (same, second run): ${FIRST_WINDOW_WARM} s"

REAL_WINDOW=""
if command -v Xvfb >/dev/null && command -v xdotool >/dev/null; then
    # A real start on an X server: until the main window is mapped.
    DISPLAY_NO=$((90 + RANDOM % 100))
    Xvfb ":$DISPLAY_NO" -screen 0 1280x800x24 -nolisten tcp >/dev/null 2>&1 &
    XVFB_PID=$!
    for _ in $(seq 50); do [ -e "/tmp/.X11-unix/X$DISPLAY_NO" ] && break; sleep 0.1; done
    t0="$(now)"
    DISPLAY=":$DISPLAY_NO" QT_QPA_PLATFORM=xcb "$GUI" >"$TMP/xcb.log" 2>&1 &
    GUI_PID=$!
    if DISPLAY=":$DISPLAY_NO" timeout 60 xdotool search --sync --onlyvisible --name "^CRLC Organizer" >/dev/null 2>&1; then
        REAL_WINDOW="$(secs "$t0" "$(now)")"
        echo "time to first window (real X11 window mapped, Xvfb): ${REAL_WINDOW} s"
    else
        cat "$TMP/xcb.log" >&2
        echo "note: no X11 window within 60 s (missing xcb libraries?); offscreen numbers stand" >&2
    fi
    kill "$GUI_PID" 2>/dev/null || true
    wait "$GUI_PID" 2>/dev/null || true
    GUI_PID=""
    kill "$XVFB_PID" 2>/dev/null || true
    wait "$XVFB_PID" 2>/dev/null || true
    XVFB_PID=""
fi

echo "== 2. the window opens the folder of 200 images (and scans it)"
"$GUI" --workspace "$WS" "$PHOTOS" >"$TMP/gui.log" 2>&1 &
GUI_PID=$!
scanned=0
for _ in $(seq 240); do
    kill -0 "$GUI_PID" 2>/dev/null || { cat "$TMP/gui.log" >&2; fail "the window exited while opening the folder"; }
    scanned="$(find "$WS" -path '*/thumbs/*' -type f 2>/dev/null | wc -l || true)"
    [ "$scanned" -ge 200 ] && break
    sleep 0.5
done
[ "$scanned" -ge 200 ] || { cat "$TMP/gui.log" >&2; fail "the window scanned $scanned of 200 images in 120 s"; }
sleep 1
kill -0 "$GUI_PID" 2>/dev/null || { cat "$TMP/gui.log" >&2; fail "the window exited after the scan"; }
kill "$GUI_PID"
wait "$GUI_PID" 2>/dev/null || true
GUI_PID=""
echo "the window opened and scanned the folder: $scanned thumbnails"
LIBS="$("$CLI" libraries --workspace "$WS" --json | tail -1)"
case "$LIBS" in *'"ok": 200'*) ;; *) fail "the library does not hold 200 good images: $LIBS" ;; esac

echo "== 3. group them with the quick preset (offline weights)"
t0="$(now)"
"$CLI" train "$PHOTOS" --preset quick --clusters 4 --workspace "$WS" --json \
    >"$TMP/train.out" 2>"$TMP/train.err" || { tail -20 "$TMP/train.err" >&2; fail "crlc train --preset quick"; }
tail -1 "$TMP/train.out" | grep -q '"state": "completed"' || { cat "$TMP/train.out" >&2; fail "the run did not complete"; }
tail -1 "$TMP/train.out" | grep -q '"preset": "quick"' || fail "the run did not use the quick preset"
echo "grouped in $(secs "$t0" "$(now)") s: $(tail -1 "$TMP/train.out" | cut -c1-160)"
"$CLI" clusters "$PHOTOS" --workspace "$WS" 2>/dev/null | head -8 || true

echo "== 4. export"
"$CLI" export "$PHOTOS" "$EXPORT" --workspace "$WS" --json >"$TMP/export.out" 2>"$TMP/export.err" \
    || { cat "$TMP/export.err" "$TMP/export.out" >&2; fail "crlc export"; }
EXPORTED="$(find "$EXPORT" -name '*.png' | wc -l)"
NGROUPS="$(find "$EXPORT" -mindepth 1 -maxdepth 1 -type d | wc -l)"
[ "$EXPORTED" = 200 ] || { cat "$TMP/export.out" >&2; fail "exported $EXPORTED of 200 images"; }
[ "$NGROUPS" -ge 2 ] || fail "exported into $NGROUPS folder(s)"
echo "exported $EXPORTED images into $NGROUPS folders"

echo "== 5. screenshot of the groups"
"$GUI" --screenshot "$TMP/clusters.png" --state clusters --workspace "$WS" "$PHOTOS" 2>"$TMP/shot.err" \
    || { cat "$TMP/shot.err" >&2; fail "crlc-organizer --screenshot --state clusters"; }
SHOT_BYTES="$(wc -c <"$TMP/clusters.png")"
[ "$SHOT_BYTES" -gt 10000 ] || fail "the screenshot is only $SHOT_BYTES bytes"
echo "screenshot: $SHOT_BYTES bytes"
if [ -n "${SMOKE_OUT:-}" ]; then
    mkdir -p "$SMOKE_OUT" && cp "$TMP/start.png" "$TMP/clusters.png" "$SMOKE_OUT/"
fi

echo "== passed"
echo "bundle size: $SIZE ($BUNDLE)"
echo "time to first window: ${FIRST_WINDOW} s first run, ${FIRST_WINDOW_WARM} s second run (offscreen start screen rendered and saved)${REAL_WINDOW:+; ${REAL_WINDOW} s until a real X11 window is mapped}"
