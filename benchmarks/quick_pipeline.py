"""Acceptance benchmark of issue 16: the quick mode end to end against naive features.

On the same N Imagenette photos (balanced over the 10 classes, the first ``N / 10`` sorted
paths of each class, as ``imagenette_quick.py`` picks them), put into one flat folder under
class-free names (``img_00001.jpeg``, ... in a shuffled order; the mapping is kept for scoring)
as a user's photo folder:

1. **naive features** (timed, in this process): per photo a full PIL decode,
   ``convert("RGB")``, shorter side to 224 + centre crop (PIL bilinear), a float32 tensor
   normalised as EfficientNet-Lite0 expects, then the project's EfficientNet-Lite0 with its
   ImageNet weights, float32, eager, eval, ``torch.inference_mode``, batches of 50 -> pooled
   1280-d features. The model is loaded before the clock starts (load time reported apart);
   the files are read once beforehand so neither way pays cold disk reads;
2. **the project's way**: ``crlc train PHOTOS --clusters 10 --preset quick --workspace WS
   --json`` in a subprocess (``sys.executable -m crlc_engine.cli``), fresh workspace, timed
   from start to exit. Memory, polled from ``/proc`` every 0.1 s: ``peak_tree_rss_mb`` = the
   largest sum of VmRSS over the process and all its descendants (decode workers included;
   pages shared between processes count once per process); ``peak_main_rss_mb`` = the ``crlc``
   process's VmHWM (exact: the kernel's high-water mark); ``sum_of_peaks_mb`` = the VmHWM of
   every process seen, summed (an upper bound). Not ``ru_maxrss`` of ``RUSAGE_CHILDREN``: a
   child started with vfork + exec inherits this process's high-water mark (after the naive
   model, about as large as the run's). From the run folder's
   ``status.json``: ``features_s``, ``features_computed``, ``elapsed_s`` (the heads). The
   workspace size is the sum of file sizes under WS (and the blocks on disk), broken down into
   pixel caches (``pixels-*.u8``), thumbnails, features, runs, catalog and other;
3. scores the run's assignments (catalog, chosen sub-head) against the true classes: ACC
   (Hungarian), NMI, ARI (``crlc_engine.results.metrics``), and compares the naive features
   with the project's cached ones (mean cosine similarity, when the cache can be read).

Prints one JSON object (and writes it with ``--json``); ``ratio_naive_to_project`` =
naive features seconds / project end-to-end seconds (goal: >= 2). Exits 0 with
``{"skipped": ...}`` when the archive is absent.

    python benchmarks/quick_pipeline.py ../shared/datasets/imagenette-224.tar.gz \
        --limit 100 --workdir /tmp/qp                 # a quick check
    python benchmarks/quick_pipeline.py ../shared/datasets/imagenette-224.tar.gz \
        --limit 2000 --workdir /tmp/qp --json /tmp/quick-pipeline-2000.json
    python benchmarks/quick_pipeline.py ../shared/datasets/imagenette-224.tar.gz \
        --data /tmp/qp/imagenette --workdir /tmp/qp --json /tmp/quick-pipeline-all.json

``--data`` reuses an unpacked copy (else the archive is unpacked into the workdir once and
reused on later runs with the same ``--workdir``). ``--threads`` sets torch's threads for the
naive way and ``OMP_NUM_THREADS`` for the ``crlc`` subprocess; without it the naive way uses
all cores and ``crlc`` runs with its own defaults, as a user's would. The photo folder and
the workspace are deleted at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _imagenette import IMAGE_SUFFIXES, cpu_flags_present, machine, unpack
from PIL import Image

from crlc_engine.api import ImageLibrary, ResultStore
from crlc_engine.models.efficientnet_lite import LITE0_NORMALIZATION, efficientnet_lite0
from crlc_engine.results.metrics import score_clustering

SIDE = 224
NAIVE_BATCH = 50
CLASSES = 10
POLL_S = 0.1
MB = 1024 * 1024


# ----------------------------------------------------------------------------- the photos


def _data(archive: Path, data: Path | None, workdir: Path) -> tuple[Path, float]:
    """An unpacked Imagenette: ``data``, or the workdir's copy (unpacked once)."""
    if data is not None:
        return data, 0.0
    target = workdir / "imagenette"
    marker = target / ".unpacked"
    if marker.is_file():
        return target, 0.0
    shutil.rmtree(target, ignore_errors=True)
    started = time.perf_counter()
    unpack(archive, target)
    marker.write_text("ok\n", encoding="utf-8")
    return target, time.perf_counter() - started


def _choose(root: Path, limit: int | None) -> list[tuple[Path, str]]:
    """(path, class) of the first sorted paths of every class, ``limit`` in all, balanced."""
    by_class: dict[str, list[Path]] = {}
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            by_class.setdefault(path.parent.name, []).append(path)
    names = sorted(by_class)
    if limit is None:
        return [(p, name) for name in names for p in by_class[name]]
    per_class, extra = divmod(limit, max(1, len(names)))
    chosen: list[tuple[Path, str]] = []
    for i, name in enumerate(names):
        take = per_class + (1 if i < extra else 0)
        chosen.extend((p, name) for p in by_class[name][:take])
    return chosen


def _photo_folder(chosen: list[tuple[Path, str]], target: Path, seed: int = 0) -> dict[str, str]:
    """Link (or copy) the photos into a fresh flat folder as ``img_NNNNN<suffix>`` in a
    shuffled order; returns file name -> class."""
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    order = list(chosen)
    random.Random(seed).shuffle(order)
    truth: dict[str, str] = {}
    for i, (path, label) in enumerate(order, start=1):
        name = f"img_{i:05d}{path.suffix.lower()}"
        try:
            os.link(path, target / name)
        except OSError:
            shutil.copy2(path, target / name)
        truth[name] = label
    return truth


def _read_all(folder: Path) -> int:
    """Read every file once (page cache warm for both ways); returns the bytes read."""
    total = 0
    for path in sorted(folder.iterdir()):
        total += len(path.read_bytes())
    return total


# ----------------------------------------------------------------------------- naive way


def _naive_pixels(path: Path, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Full decode, RGB, shorter side to 224 (bilinear), centre crop; normalised [3, S, S]."""
    with Image.open(path) as image:
        rgb = image.convert("RGB")
    width, height = rgb.size
    scale = SIDE / min(width, height)
    size = (max(SIDE, round(width * scale)), max(SIDE, round(height * scale)))
    rgb = rgb.resize(size, Image.Resampling.BILINEAR)
    left, top = (size[0] - SIDE) // 2, (size[1] - SIDE) // 2
    rgb = rgb.crop((left, top, left + SIDE, top + SIDE))
    x = torch.from_numpy(np.asarray(rgb, dtype=np.uint8).copy()).permute(2, 0, 1)
    return (x.float() / 255.0 - mean) / std


def _naive(folder: Path, names: list[str]) -> tuple[dict[str, Any], np.ndarray]:
    """The naive features of ``names`` (in that order) and their timing."""
    started = time.perf_counter()
    model = efficientnet_lite0(pretrained=True)
    model.drop_classifier()
    model.eval()
    load_s = time.perf_counter() - started
    mean = torch.tensor(LITE0_NORMALIZATION[0]).view(3, 1, 1)
    std = torch.tensor(LITE0_NORMALIZATION[1]).view(3, 1, 1)
    out = np.zeros((len(names), 1280), dtype=np.float32)
    decode_s = 0.0
    started = time.perf_counter()
    with torch.inference_mode():
        for start in range(0, len(names), NAIVE_BATCH):
            batch_started = time.perf_counter()
            batch = torch.stack(
                [_naive_pixels(folder / n, mean, std) for n in names[start : start + NAIVE_BATCH]]
            )
            decode_s += time.perf_counter() - batch_started
            out[start : start + len(batch)] = model(batch).numpy()
    seconds = time.perf_counter() - started
    del model
    gc.collect()
    return {
        "seconds": round(seconds, 2),
        "images_per_s": round(len(names) / seconds, 2) if seconds > 0 else 0.0,
        "decode_s": round(decode_s, 2),
        "network_s": round(seconds - decode_s, 2),
        "model_load_s": round(load_s, 2),
        "batch": NAIVE_BATCH,
        "threads": torch.get_num_threads(),
    }, out


# ----------------------------------------------------------------------------- project's way


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (``/proc/<pid>/task/*/children``, else a ``/proc`` scan)."""
    found: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            found.extend(int(c) for c in (task / "children").read_text().split())
        return found
    except (OSError, ValueError):
        pass
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _memory_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in kB; zeros once it is gone."""
    rss = hwm = 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    except (OSError, ValueError):
        pass
    return rss, hwm


class _TreeMemory:
    """Polls a process tree's memory every :data:`POLL_S` seconds in a thread.

    ``peak_tree_kb``: the largest sum of VmRSS over the process and its descendants at one
    sample. ``peak_main_kb``: the main process's VmHWM (its kernel-kept high-water mark, so
    exact up to the last sample). ``hwm_kb``: each process's last seen VmHWM.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_tree_kb = 0
        self.peak_processes = 0
        self.hwm_kb: dict[int, int] = {}
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        total, processes, todo = 0, 0, [self.pid]
        while todo:
            pid = todo.pop()
            rss, hwm = _memory_kb(pid)
            if hwm:
                total += rss
                processes += 1
                self.hwm_kb[pid] = max(self.hwm_kb.get(pid, 0), hwm)
            todo.extend(_children(pid))
        self.samples += 1
        if total > self.peak_tree_kb:
            self.peak_tree_kb, self.peak_processes = total, processes

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(POLL_S)

    @property
    def peak_main_kb(self) -> int:
        return self.hwm_kb.get(self.pid, 0)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _run_crlc(photos: Path, ws: Path, threads: int | None, log: Path) -> dict[str, Any]:
    """``crlc train PHOTOS --clusters 10 --preset quick --workspace WS --json``, measured."""
    command = [
        sys.executable,
        "-m",
        "crlc_engine.cli",
        "train",
        str(photos),
        "--clusters",
        str(CLASSES),
        "--preset",
        "quick",
        "--workspace",
        str(ws),
        "--json",
    ]
    env = dict(os.environ)
    if threads is not None:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    repo = Path(__file__).resolve().parent.parent
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(repo), env.get("PYTHONPATH")]))
    stdout_path = log.with_suffix(".stdout")
    with log.open("wb") as err, stdout_path.open("wb") as out:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err, env=env, cwd=repo)
        memory = _TreeMemory(process.pid)
        code = process.wait()
        wall = time.perf_counter() - started
        memory.stop()
    lines = stdout_path.read_text(encoding="utf-8").strip().splitlines()
    if code != 0 or not lines:
        tail = log.read_text(encoding="utf-8", errors="replace")[-2000:]
        raise RuntimeError(f"crlc train exited {code}:\n{tail}")
    return {
        "command": " ".join(["python", *command[1:]]),
        "wall_s": wall,
        "summary": json.loads(lines[-1]),
        "peak_tree_rss_mb": round(memory.peak_tree_kb / 1024, 1),
        "peak_tree_processes": memory.peak_processes,
        "peak_main_rss_mb": round(memory.peak_main_kb / 1024, 1),
        "sum_of_peaks_mb": round(sum(memory.hwm_kb.values()) / 1024, 1),
        "processes_seen": len(memory.hwm_kb),
        "rss_samples": memory.samples,
    }


def _part(rel: Path) -> str:
    name = rel.name
    if name.startswith("pixels-") and name.endswith(".u8"):
        return "pixel_cache"
    if name.startswith("catalog.sqlite"):
        return "catalog"
    for part in ("thumbs", "features", "runs"):
        if part in rel.parts:
            return {"thumbs": "thumbnails"}.get(part, part)
    return "other"


def _workspace_size(ws: Path, images: int) -> dict[str, Any]:
    """Sum of file sizes under ``ws`` (apparent and on disk) with a breakdown, in MB."""
    parts: dict[str, int] = {}
    apparent = on_disk = files = 0
    for path in ws.rglob("*"):
        if path.is_symlink() or not path.is_file():
            continue
        stat = path.stat()
        files += 1
        apparent += stat.st_size
        on_disk += stat.st_blocks * 512
        key = _part(path.relative_to(ws))
        parts[key] = parts.get(key, 0) + stat.st_size
    return {
        "total_mb": round(apparent / MB, 1),
        "on_disk_mb": round(on_disk / MB, 1),
        "per_10k_photos_mb": round(apparent / MB * 10_000 / max(images, 1), 1),
        "files": files,
        "parts_mb": {k: round(v / MB, 2) for k, v in sorted(parts.items())},
    }


def _score(photos: Path, ws: Path, run_id: str, truth: dict[str, str]) -> dict[str, Any]:
    """ACC / NMI / ARI of the run's catalog assignments against the true classes."""
    with ImageLibrary.open([photos], ws, read_only=True) as library:
        names = {r.id: r.rel_path for r in library.images(None)}
        assigned = ResultStore(library.catalog).load(run_id)
    classes = sorted(set(truth.values()))
    true = np.array([classes.index(truth[names[int(i)]]) for i in assigned.image_ids])
    scores = score_clustering(true, assigned.clusters).as_dict()
    return {
        **{k: round(100 * float(v), 2) for k, v in scores.items()},
        "assigned": len(assigned.image_ids),
        "clusters_used": len(set(assigned.clusters.tolist())),
    }


def _agreement(
    photos: Path, ws: Path, names: list[str], naive: np.ndarray | None
) -> dict[str, Any] | None:
    """Mean / min cosine similarity of the naive features and the project's cached ones
    (``features/<key>/features.f16``, row = image id - 1); ``None`` when not readable."""
    if naive is None:
        return None
    try:
        with ImageLibrary.open([photos], ws, read_only=True) as library:
            ids = {r.rel_path: r.id for r in library.images(None)}
            specs = sorted((library.workspace / "features").glob("*/spec.json"))
        if len(specs) != 1:
            return None
        spec = json.loads(specs[0].read_text(encoding="utf-8"))
        table = np.fromfile(specs[0].parent / "features.f16", dtype=np.float16)
        table = table.reshape(-1, int(spec["dim"])).astype(np.float32)
        project = table[[ids[n] - 1 for n in names]]
    except (OSError, KeyError, ValueError, IndexError):
        return None

    def unit(x: np.ndarray) -> np.ndarray:
        norms: np.ndarray = np.linalg.norm(x, axis=1, keepdims=True)
        out: np.ndarray = x / np.maximum(norms, 1e-12)
        return out

    cosine = (unit(naive) * unit(project)).sum(axis=1)
    return {
        "mean_cosine": round(float(cosine.mean()), 4),
        "min_cosine": round(float(cosine.min()), 4),
        "precision": spec.get("precision"),
    }


def _project(photos: Path, ws: Path, threads: int | None, log: Path) -> dict[str, Any]:
    """The ``crlc train`` run and what its run folder and workspace say."""
    shutil.rmtree(ws, ignore_errors=True)
    run = _run_crlc(photos, ws, threads, log)
    summary = run.pop("summary")
    status = json.loads((Path(summary["run_dir"]) / "status.json").read_text(encoding="utf-8"))
    features_s = float(status.get("features_s") or 0.0)
    computed = int(status.get("features_computed") or 0)
    wall = run.pop("wall_s")
    return {
        **run,
        "seconds": round(wall, 2),
        "images": summary.get("images"),
        "images_per_s": round(int(summary.get("images") or 0) / wall, 2),
        "features_s": round(features_s, 2),
        "features_computed": computed,
        "features_per_s": round(computed / features_s, 2) if features_s > 0 else None,
        "heads_s": round(float(status.get("elapsed_s") or 0.0), 2),
        "other_s": round(wall - features_s - float(status.get("elapsed_s") or 0.0), 2),
        "state": summary.get("state"),
        "run_id": summary["run_id"],
        "run_dir": summary["run_dir"],
        "preset": summary.get("preset"),
        "device": summary.get("device"),
        "log": str(log),
    }


# ----------------------------------------------------------------------------- main


def _machine(threads: int | None) -> dict[str, Any]:
    return {
        **machine(),
        "cpu_flags": cpu_flags_present(),
        "crlc_threads_env": threads,
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("archive", type=Path, help="imagenette-224.tar.gz")
    parser.add_argument("--limit", type=int, default=None, help="photos in all (default: all)")
    parser.add_argument("--data", type=Path, default=None, help="an unpacked copy to reuse")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a new temp folder")
    parser.add_argument("--threads", type=int, default=None, help="default: all cores")
    parser.add_argument("--skip-naive", action="store_true", help="only the project's way")
    parser.add_argument("--keep", action="store_true", help="keep the photo folder and WS")
    parser.add_argument("--json", type=Path, default=None, help="also write the JSON here")
    return parser


def main() -> None:
    args = _parser().parse_args()
    if not args.archive.is_file() and (args.data is None or not args.data.is_dir()):
        print(json.dumps({"benchmark": "quick_pipeline", "skipped": f"{args.archive} not found"}))
        return
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    temporary = args.workdir is None
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="crlc-quick-pipeline-"))
    workdir.mkdir(parents=True, exist_ok=True)
    data, unpack_s = _data(args.archive, args.data, workdir)
    chosen = _choose(data, args.limit)
    photos, ws = workdir / "photos", workdir / "ws"
    truth = _photo_folder(chosen, photos)
    names = sorted(truth)
    photo_bytes = _read_all(photos)

    naive: dict[str, Any] | None = None
    naive_features: np.ndarray | None = None
    if not args.skip_naive:
        naive, naive_features = _naive(photos, names)
        print(json.dumps({"naive": naive}), file=sys.stderr, flush=True)
    project = _project(photos, ws, args.threads, workdir / "crlc-train.log")
    print(json.dumps({"project": project}), file=sys.stderr, flush=True)

    result: dict[str, Any] = {
        "benchmark": "quick_pipeline",
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "photos": len(names),
        "classes": len(set(truth.values())),
        "photos_mb": round(photo_bytes / MB, 1),
        "ratio_naive_to_project": round(naive["seconds"] / project["seconds"], 2)
        if naive
        else None,
        "features_per_s": project["features_per_s"],
        "heads_s": project["heads_s"],
        "peak_rss_mb": project["peak_tree_rss_mb"],
        "workspace": _workspace_size(ws, len(names)),
        "scores": _score(photos, ws, project["run_id"], truth),
        "feature_agreement": _agreement(photos, ws, names, naive_features),
        "naive": naive,
        "project": project,
        "unpack_s": round(unpack_s, 1),
        "workdir": str(workdir),
        "machine": _machine(args.threads),
    }
    if not args.keep:
        shutil.rmtree(ws, ignore_errors=True)
        shutil.rmtree(photos, ignore_errors=True)
        if temporary:
            shutil.rmtree(workdir, ignore_errors=True)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
