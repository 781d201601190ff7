"""The group, correct, refine, export, retrain flow of a user, scored by name accuracy.

Takes a folder of class sub-folders (the ground truth), copies a balanced sample into one flat
folder whose file names carry no class (``img_0000.jpg`` ...), then, through the public jobs:

1. trains with K clusters (default 10; the quick preset unless ``--preset``);
2. names every cluster after its majority class (so classes split in two share a name);
3. labels ``--labels`` pictures in each of the first ``--labelled-groups`` classes and moves
   ``--moves`` misplaced pictures (in a cluster named after another class) to a cluster named
   after their class;
4. exports (copy) from that run, then refines with the labels and exports again;
5. trains a new run with ``--retrain`` clusters (default: the number of classes).

Name accuracy is the share of exported pictures that land in the folder named after their
class. Prints one JSON object: the accuracies before and after refine, the clusters whose
name is not their majority class, and the retrained run's names.

    python benchmarks/groups_scenario.py /tmp/data/imagenette/val --classes n02102040 \\
        n03028079 n03417042 n01440764 n03888257 --per-class 80 --out /tmp/groups-scenario
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from crlc_engine.api import export_items
from crlc_engine.core.device import resolve_device
from crlc_engine.library import ImageLibrary
from crlc_engine.pipeline.jobs import refine_folder, train_folder
from crlc_engine.pipeline.presets import default_preset_name, resolve_train_config
from crlc_engine.results.annotations import Annotations
from crlc_engine.results.assignments import ResultStore
from crlc_engine.results.export import export_images


def make_flat_copy(
    source: Path, classes: list[str], per_class: int, out: Path, seed: int
) -> dict[str, str]:
    """Copy ``per_class`` images of each class into ``out/photos`` under class-free names."""
    rng = random.Random(seed)
    photos = out / "photos"
    if photos.exists():
        shutil.rmtree(photos)
    photos.mkdir(parents=True)
    chosen: list[tuple[Path, str]] = []
    for name in classes:
        files = sorted(p for p in (source / name).iterdir() if p.is_file())
        chosen += [(p, name) for p in rng.sample(files, min(per_class, len(files)))]
    rng.shuffle(chosen)
    truth = {}
    for k, (path, name) in enumerate(chosen):
        target = photos / f"img_{k:04d}{path.suffix.lower()}"
        shutil.copy2(path, target)
        truth[target.name] = name
    (out / "truth.json").write_text(json.dumps(truth, indent=1))
    return truth


def majority_names(library: ImageLibrary, run_id: str, truth: dict[str, str]) -> dict[int, str]:
    """cluster -> majority class of its images."""
    data = ResultStore(library.catalog).load(run_id)
    paths = {r.id: r.path.name for r in library.images(None)}
    votes: dict[int, Counter[str]] = {}
    for image, cluster in zip(data.image_ids.tolist(), data.clusters.tolist(), strict=True):
        votes.setdefault(cluster, Counter())[truth[paths[image]]] += 1
    return {c: v.most_common(1)[0][0] for c, v in votes.items()}


def export_accuracy(library: ImageLibrary, run_id: str, dest: Path, truth: dict[str, str]) -> float:
    """Copy-export the run into ``dest``; the share of files in their class's folder."""
    if dest.exists():
        shutil.rmtree(dest)
    items = export_items(library, run_id)
    result = export_images(items, dest, "copy", library.roots)
    good = total = 0
    for entry in result.entries:
        if entry.destination is None:
            continue
        total += 1
        good += entry.folder == truth[entry.source.name]
    return good / max(total, 1)


def wrong_names(library: ImageLibrary, run_id: str, truth: dict[str, str]) -> list[dict[str, Any]]:
    """Named clusters whose majority class is another one."""
    names = Annotations(library.catalog).names(run_id)
    majority = majority_names(library, run_id, truth)
    return [
        {"cluster": c, "name": n, "majority": majority.get(c)}
        for c, n in sorted(names.items())
        if c in majority and majority[c] != n
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("source", type=Path, help="folder of class sub-folders")
    parser.add_argument("--classes", nargs="+", required=True)
    parser.add_argument("--per-class", type=int, default=80)
    parser.add_argument("--out", type=Path, default=Path("/tmp/groups-scenario"))
    parser.add_argument("--clusters", type=int, default=10)
    parser.add_argument("--retrain", type=int, default=None)
    parser.add_argument("--preset", default=None)
    parser.add_argument("--labels", type=int, default=2)
    parser.add_argument("--labelled-groups", type=int, default=3)
    parser.add_argument("--moves", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--attach-share", type=float, default=None, help="crlc_engine.results.groups.ATTACH_SHARE"
    )
    args = parser.parse_args(argv)
    if args.attach_share is not None:
        import crlc_engine.results.groups.naming as groups

        groups.ATTACH_SHARE = args.attach_share
    started = time.monotonic()
    truth = make_flat_copy(args.source, args.classes, args.per_class, args.out, args.seed)
    photos, ws = args.out / "photos", args.out / "ws"
    if ws.exists():
        shutil.rmtree(ws)
    device = resolve_device("auto")
    preset = args.preset or default_preset_name(device.kind)
    config = resolve_train_config(args.clusters, preset, {"seed": args.seed})
    first = train_folder(photos, config, ws)
    rng = random.Random(args.seed)
    with ImageLibrary.open([photos], ws) as library:
        notes = Annotations(library.catalog)
        majority = majority_names(library, first.run.run_id, truth)
        for cluster, name in sorted(majority.items()):
            notes.name_cluster(first.run.run_id, cluster, name)
        data = ResultStore(library.catalog).load(first.run.run_id)
        by_path = {r.path.name: r.id for r in library.images(None)}
        cluster_of = data.cluster_of()
        for name in args.classes[: args.labelled_groups]:
            members = sorted(i for f, i in by_path.items() if truth[f] == name)
            notes.label(rng.sample(members, args.labels), name)
        misplaced = sorted(i for f, i in by_path.items() if majority[cluster_of[i]] != truth[f])
        for image in rng.sample(misplaced, min(args.moves, len(misplaced))):
            name = truth[next(f for f, i in by_path.items() if i == image)]
            target = min(c for c, n in majority.items() if n == name)
            notes.move_to_cluster(first.run.run_id, [image], target)
        before = export_accuracy(library, first.run.run_id, args.out / "export-before", truth)
    refined = refine_folder(photos, first.run.run_id, workspace=ws)
    with ImageLibrary.open([photos], ws) as library:
        after = export_accuracy(library, refined.run.run_id, args.out / "export-after", truth)
        wrong_refined = wrong_names(library, refined.run.run_id, truth)
    retrain = args.retrain or len(args.classes)
    second = train_folder(photos, config.replace(clusters=retrain), ws)
    with ImageLibrary.open([photos], ws) as library:
        names = Annotations(library.catalog).names(second.run.run_id)
        majority = majority_names(library, second.run.run_id, truth)
        wrong_second = wrong_names(library, second.run.run_id, truth)
    result = {
        "images": len(truth),
        "classes": len(args.classes),
        "clusters": args.clusters,
        "preset": preset,
        "seed": args.seed,
        "attach_share": args.attach_share,
        "name_accuracy_before_refine": round(before, 4),
        "name_accuracy_after_refine": round(after, 4),
        "wrong_named_clusters_after_refine": wrong_refined,
        "retrain_clusters": retrain,
        "retrain_majority_named": sum(names.get(c) == m for c, m in majority.items()),
        "retrain_wrong_named": wrong_second,
        "retrain_unnamed": sum(c not in names for c in majority),
        "seconds": round(time.monotonic() - started, 1),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
