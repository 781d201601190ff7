"""Image-library ingestion speed and memory (pixel cache + thumbnail + catalog) vs a naive loop.

Makes camera-sized test photos from the Imagenette archive (``imagenette-224.tar.gz``): N
distinct images, each upscaled to 4000x3000 (bicubic, mild noise so that JPEG sizes are
realistic) and saved as JPEG quality 92, about 2 MB each. Generation is not measured; pass
``--workdir`` to reuse the photos of an earlier run. Then:

1. naive: a spelled-out loop (:func:`naive_decode`: full decode, EXIF transpose, RGB, square,
   256-px thumbnail) in a pool of ``--workers`` processes, images/s;
2. library: ``ImageLibrary.open([photos], fresh_workspace).scan(S, workers=W)``, images/s =
   decoded / wall seconds of the scan call (walk, decode, cache, thumbnails, catalog);
3. at scale (``--scale`` files, 0 skips it): the N photos hard-linked up to ``--scale`` files,
   scanned in a child process; its peak RSS including its worker processes, images/s and the
   workspace's disk use.

Prints one JSON object on stdout and a short table on stderr. Exits 0 with ``{"skipped": ...}``
when the archive is absent. Shared machines are noisy: compare numbers within one run.

    python benchmarks/library_ingest.py ../shared/datasets/imagenette-224.tar.gz \\
        --images 250 --workers 1 --scale 10000
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import multiprocessing
import os
import platform
import resource
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import PIL
from PIL import Image, ImageOps

BENCHMARK = "library_ingest"
PHOTO_SIZE = (4000, 3000)
JPEG_QUALITY = 92
THUMB_SIDE = 256  # same as the library's thumbnails
THUMB_QUALITY = 85
FILES_PER_FOLDER = 1000


# ---------------------------------------------------------------------------- test photos
def _pick_members(archive: Path, count: int) -> list[str]:
    """``count`` distinct JPEG member names spread evenly over the whole archive."""
    with tarfile.open(archive, "r:gz") as tar:
        names = sorted(
            m.name for m in tar.getmembers() if m.isfile() and m.name.lower().endswith(".jpeg")
        )
    if count > len(names):
        raise SystemExit(f"{archive} holds only {len(names)} images (asked for {count})")
    step = len(names) / count
    return [names[int(i * step)] for i in range(count)]


def _make_photo(job: tuple[bytes, str, int, int]) -> int:
    """One small JPEG -> a 4000x3000 JPEG with mild noise; returns the file size."""
    import io

    data, out, seed, noise = job
    rng = np.random.default_rng(seed)
    with Image.open(io.BytesIO(data)) as small:
        img = small.convert("RGB")
    width, height = img.size
    # Crop the 4:3 middle so the upscale does not stretch the picture.
    crop_h = min(height, round(width * PHOTO_SIZE[1] / PHOTO_SIZE[0]))
    top = (height - crop_h) / 2
    big = img.resize(PHOTO_SIZE, Image.Resampling.BICUBIC, box=(0, top, width, top + crop_h))
    if noise > 0:
        arr = np.asarray(big, dtype=np.int16)
        arr = arr + rng.integers(-noise, noise + 1, size=arr.shape, dtype=np.int16)
        big = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    exif = Image.Exif()
    exif[0x0112] = 1  # Orientation: normal (camera files carry the tag)
    exif[0x010F] = "CRLC benchmark"  # Make
    tmp = out + ".tmp"
    big.save(tmp, "JPEG", quality=JPEG_QUALITY, exif=exif.tobytes())
    os.replace(tmp, out)
    return os.path.getsize(out)


def make_photos(archive: Path, folder: Path, count: int, noise: int, processes: int) -> None:
    """Write ``count`` photos ``p0000.jpg`` ... into ``folder`` (kept ones are reused)."""
    folder.mkdir(parents=True, exist_ok=True)
    wanted = {f"p{i:04d}.jpg" for i in range(count)}
    for extra in folder.glob("p*.jpg"):  # a reused workdir made with a larger --images
        if extra.name not in wanted:
            extra.unlink()
    missing = [i for i in range(count) if not (folder / f"p{i:04d}.jpg").is_file()]
    if not missing:
        return
    names = _pick_members(archive, count)
    by_name = {names[i]: i for i in missing}
    jobs: list[tuple[bytes, str, int, int]] = []
    with tarfile.open(archive, "r|gz") as tar:
        for member in tar:
            index = by_name.get(member.name)
            if index is None:
                continue
            handle = tar.extractfile(member)
            assert handle is not None
            jobs.append((handle.read(), str(folder / f"p{index:04d}.jpg"), index, noise))
    print(f"generating {len(jobs)} photos of {PHOTO_SIZE[0]}x{PHOTO_SIZE[1]} ...", file=sys.stderr)
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        for _ in pool.imap_unordered(_make_photo, jobs):
            pass


def photo_files(folder: Path, count: int) -> list[Path]:
    return [folder / f"p{i:04d}.jpg" for i in range(count)]


# ---------------------------------------------------------------------------- naive baseline
def naive_decode(job: tuple[str, int, str]) -> bytes:
    """The obvious way, for comparison: the same steps as the library, without draft mode.

    Full-resolution decode, EXIF orientation, RGB, shorter side to ``side`` and centre crop
    in one box resize (antialiased bilinear, like the library), a 256-px JPEG thumbnail.
    Returns the S x S x 3 pixels.
    """
    path, side, thumb_path = job
    with Image.open(path) as img:
        img.load()  # full decode: every one of the 12 megapixels
        rgb = (ImageOps.exif_transpose(img) or img).convert("RGB")
    width, height = rgb.size
    short = min(width, height)
    left, top = (width - short) / 2, (height - short) / 2
    square = rgb.resize(
        (side, side), Image.Resampling.BILINEAR, box=(left, top, left + short, top + short)
    )
    thumb = rgb.copy()
    thumb.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.Resampling.BILINEAR)
    thumb.save(thumb_path, "JPEG", quality=THUMB_QUALITY)
    return square.tobytes()


def run_naive(files: list[Path], side: int, workers: int, out: Path) -> float:
    """images/s of :func:`naive_decode` over ``files`` (pool start-up included)."""
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(str(f), side, str(out / f"{i}.jpg")) for i, f in enumerate(files)]
    start = time.perf_counter()
    with (out / "pixels.u8").open("wb") as sink:
        if workers <= 0:
            for job in jobs:
                sink.write(naive_decode(job))
        else:
            with multiprocessing.get_context("spawn").Pool(workers) as pool:
                for pixels in pool.imap(naive_decode, jobs, chunksize=1):
                    sink.write(pixels)
    seconds = time.perf_counter() - start
    return len(jobs) / seconds


# ---------------------------------------------------------------------------- library
def run_library(folder: Path, workspace_base: Path, side: int, workers: int) -> dict[str, Any]:
    """One scan of ``folder`` into a fresh workspace; end-to-end wall time of the scan call."""
    from crlc_engine.library import ImageLibrary

    library = ImageLibrary.open([folder], workspace_base)
    try:
        start = time.perf_counter()
        summary = library.scan(side, workers=workers)
        seconds = time.perf_counter() - start
    finally:
        library.close()
    return {
        "decoded": summary.decoded,
        "images_ok": summary.images_ok,
        "skipped": summary.images_skipped,
        "seconds": seconds,
        "images_per_s": summary.decoded / seconds if seconds > 0 else 0.0,
        "workspace": str(summary.workspace),
    }


def child_scan(folder: str, workspace_base: str, side: int, workers: int) -> None:
    """``--child-scan``: scan in this (fresh) process, print results and own peak RSS (KiB)."""
    result = run_library(Path(folder), Path(workspace_base), side, workers)
    own = resource.getrusage(resource.RUSAGE_SELF)
    workers_usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    result["maxrss_self_kb"] = own.ru_maxrss
    result["maxrss_children_kb"] = workers_usage.ru_maxrss
    result["cpu_self_s"] = own.ru_utime + own.ru_stime  # includes imports and the walk
    result["cpu_children_s"] = workers_usage.ru_utime + workers_usage.ru_stime
    print(json.dumps(result))


# ---------------------------------------------------------------------------- scale & memory
def link_tree(files: list[Path], folder: Path, total: int) -> None:
    """Hard-link ``files`` round-robin up to ``total`` names ``dNN/fNNNNN.jpg`` (1,000 a folder)."""
    if folder.exists():
        shutil.rmtree(folder)
    for i in range(total):
        sub = folder / f"d{i // FILES_PER_FOLDER:02d}"
        if i % FILES_PER_FOLDER == 0:
            sub.mkdir(parents=True)
        os.link(files[i % len(files)], sub / f"f{i + 1:05d}.jpg")


def _tree_rss_kb(root_pid: int) -> int:
    """Current RSS (KiB) of ``root_pid`` plus all its descendants, from /proc."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    page_kb = os.sysconf("SC_PAGE_SIZE") // 1024
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry.name)
        parents[pid] = int(fields[1])  # field 4: ppid
        rss[pid] = int(fields[21]) * page_kb  # field 24: rss in pages
    tree, frontier = {root_pid}, [root_pid]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in tree:
                tree.add(pid)
                frontier.append(pid)
    return sum(rss.get(pid, 0) for pid in tree)


def run_child_scan(folder: Path, workspace_base: Path, side: int, workers: int) -> dict[str, Any]:
    """Scan in a child process: its result, its rusage seen from here, sampled tree RSS."""
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--child-scan",
        str(folder),
        str(workspace_base),
        "--size",
        str(side),
        "--workers",
        str(workers),
    ]
    with tempfile.TemporaryFile("w+") as out:
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=out)
        peak_tree = 0
        stop = threading.Event()

        def sample() -> None:
            nonlocal peak_tree
            while not stop.is_set():
                with contextlib.suppress(Exception):  # /proc races: a process vanished
                    peak_tree = max(peak_tree, _tree_rss_kb(process.pid))
                stop.wait(0.25)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        # wait4 gives this child's rusage; Linux folds in its reaped children (RUSAGE_BOTH).
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
        stop.set()
        sampler.join()
        out.seek(0)
        text = out.read()
    if process.returncode != 0:
        raise SystemExit(f"child scan failed with exit code {process.returncode}")
    result: dict[str, Any] = json.loads(text.strip().splitlines()[-1])
    result["maxrss_wait4_kb"] = usage.ru_maxrss
    result["tree_rss_sampled_kb"] = peak_tree
    result["process_wall_s"] = wall
    return result


def disk_use_bytes(folder: Path) -> int:
    """Allocated bytes below ``folder`` (sparse files count what is really stored)."""
    total = 0
    for dirpath, _, filenames in os.walk(folder):
        for name in filenames:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total


# ---------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("archive", type=Path, nargs="?", help="imagenette-224.tar.gz")
    parser.add_argument("--images", type=int, default=250, help="distinct photos (N)")
    parser.add_argument("--size", type=int, default=96, help="training size S of the cache")
    parser.add_argument("--workers", type=int, default=1, help="decoding processes (both)")
    parser.add_argument("--scale", type=int, default=10_000, help="files at scale (0: skip)")
    parser.add_argument("--noise", type=int, default=6, help="uniform noise +-N in the photos")
    parser.add_argument("--workdir", type=Path, default=None, help="reuse generated photos")
    parser.add_argument(
        "--child-scan", nargs=2, metavar=("DIR", "WS"), default=None, help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child_scan:
        child_scan(args.child_scan[0], args.child_scan[1], args.size, args.workers)
        return
    if args.archive is None or not args.archive.is_file():
        print(json.dumps({"benchmark": BENCHMARK, "skipped": f"{args.archive} not found"}))
        return
    if args.images < 1:
        parser.error("--images must be at least 1")

    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="crlc-ingest-"))).resolve()
    photos = workdir / "photos"
    t0 = time.perf_counter()
    make_photos(args.archive, photos, args.images, args.noise, max(1, os.cpu_count() or 1))
    generate_s = time.perf_counter() - t0
    files = photo_files(photos, args.images)
    mean_mb = sum(f.stat().st_size for f in files) / len(files) / 1e6

    scratch = Path(tempfile.mkdtemp(prefix="run-", dir=workdir))
    try:
        naive = run_naive(files, args.size, args.workers, scratch / "naive")
        library = run_library(photos, scratch / "ws", args.size, args.workers)
        scale: dict[str, Any] = {}
        if args.scale > 0:
            tree = workdir / "scale"
            link_tree(files, tree, args.scale)
            scale = run_child_scan(tree, scratch / "ws-scale", args.size, args.workers)
            scale["workspace_bytes"] = disk_use_bytes(Path(scale["workspace"]))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    peak_kb = (
        max(
            scale["maxrss_wait4_kb"],
            scale["maxrss_self_kb"],
            scale["maxrss_children_kb"],
        )
        if scale
        else None
    )
    report = {
        "benchmark": BENCHMARK,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.platform()}, {os.cpu_count()} CPUs",
        "python": platform.python_version(),
        "pillow": PIL.__version__,
        "images": args.images,
        "mean_file_mb": round(mean_mb, 2),
        "size": args.size,
        "workers": args.workers,
        "naive_images_per_s": round(naive, 2),
        "library_images_per_s": round(library["images_per_s"], 2),
        "speedup": round(library["images_per_s"] / naive, 2) if naive > 0 else None,
        "scale_images": scale.get("decoded") if scale else 0,
        "scale_images_per_s": round(scale["images_per_s"], 2) if scale else None,
        "peak_rss_mb": round(peak_kb / 1024, 1) if peak_kb is not None else None,
        "workspace_mb": round(scale["workspace_bytes"] / 1e6, 1) if scale else None,
        # Extra detail (not part of the headline numbers).
        "library_seconds": round(library["seconds"], 2),
        "library_images_ok": library["images_ok"],
        "scale_seconds": round(scale["seconds"], 2) if scale else None,
        "scale_images_ok": scale.get("images_ok") if scale else None,
        "peak_rss_tree_sum_mb": round(scale["tree_rss_sampled_kb"] / 1024, 1) if scale else None,
        # CPU seconds of the scale scan: the scanning process vs its decoding processes.
        "scale_cpu_main_s": round(scale["cpu_self_s"], 1) if scale else None,
        "scale_cpu_workers_s": round(scale["cpu_children_s"], 1) if scale else None,
        "generate_seconds": round(generate_s, 1),
        "workdir": str(workdir),
    }
    rows = [
        ("photos", f"{args.images} x {PHOTO_SIZE[0]}x{PHOTO_SIZE[1]}, {mean_mb:.2f} MB mean"),
        ("S / workers", f"{args.size} / {args.workers}"),
        ("naive", f"{naive:.2f} images/s"),
        (
            "library",
            f"{library['images_per_s']:.2f} images/s ({report['speedup']}x naive, "
            f"{library['seconds']:.1f} s)",
        ),
    ]
    if scale:
        rows += [
            (
                f"library @ {scale['decoded']}",
                f"{scale['images_per_s']:.2f} images/s ({scale['seconds']:.0f} s)",
            ),
            (
                "peak RSS",
                f"{report['peak_rss_mb']} MB largest process, "
                f"{report['peak_rss_tree_sum_mb']} MB sampled sum over the process tree",
            ),
            ("workspace", f"{report['workspace_mb']} MB on disk"),
            (
                "CPU @ scale",
                f"{report['scale_cpu_main_s']} s scanning process, "
                f"{report['scale_cpu_workers_s']} s decoding processes",
            ),
        ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}", file=sys.stderr)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
