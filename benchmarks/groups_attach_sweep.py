"""How the share that names a cluster (``crlc_engine.results.groups.ATTACH_SHARE``) trades wrong
names for unnamed clusters.

For a library with a named reference run (e.g. the refine run left by
``benchmarks/groups_scenario.py``), trains runs with 3, 4 and 7 clusters that follow it, then
names their clusters again at several shares and prints, per number of clusters and share,
the shares of pictures under their own group's name, under another group's name and in an
unnamed cluster: one JSON object per line.

    python benchmarks/groups_attach_sweep.py PHOTOS WORKSPACE TRUTH.json REF_RUN \\
        [--names '{"n02102040": "Dog", ...}']

``TRUTH.json`` maps file names to classes (``groups_scenario.py`` writes one); ``--names``
maps those classes to the group names used in the library.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from crlc_engine.library import ImageLibrary
from crlc_engine.pipeline.jobs import train_folder
from crlc_engine.pipeline.presets import resolve_train_config
from crlc_engine.results.groups import GroupStore, attach_names

SHARES = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def score(
    names: dict[int, str],
    labels: dict[int, str],
    clusters: dict[int, int],
    paths: dict[int, str],
    truth: dict[str, str],
) -> dict[str, float]:
    """Shares of pictures under their own group's name, another one's, or none."""
    counts = {"own": 0, "other": 0, "unnamed": 0}
    for image, cluster in clusters.items():
        name = labels.get(image) or names.get(cluster)
        if name is None:
            counts["unnamed"] += 1
        else:
            counts["own" if name == truth[paths[image]] else "other"] += 1
    return {k: round(v / max(1, len(clusters)), 3) for k, v in counts.items()}


def sweep(photos: Path, ws: Path, truth: dict[str, str], ref: str) -> list[dict[str, Any]]:
    rows = []
    for k in (3, 4, 7):
        config = resolve_train_config(k, "quick", {"device": "cpu", "seed": 3})
        outcome = train_folder(photos, config, ws, workers=0, names_from=ref)
        with ImageLibrary.open([photos], ws, read_only=True) as library:
            store = GroupStore(library.catalog)
            reference = store.reference(ref)
            labels, ignored = store.labels(), store.ignored()
            clusters = store.results.load(outcome.run.run_id).cluster_of()
            paths = {r.id: r.path.name for r in library.images(None)}
        for share in SHARES:
            names = attach_names(reference, labels, clusters, ignored, share=share)
            rows.append(
                {"clusters": k, "share": share, **score(names, labels, clusters, paths, truth)}
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("photos", type=Path)
    parser.add_argument("workspace", type=Path)
    parser.add_argument("truth", type=Path)
    parser.add_argument("reference_run")
    parser.add_argument("--names", default="{}", help="JSON: class -> group name")
    args = parser.parse_args(argv)
    mapping = json.loads(args.names)
    truth = json.loads(args.truth.read_text())
    truth = {f: mapping.get(c, c) for f, c in truth.items()}
    for row in sweep(args.photos, args.workspace, truth, args.reference_run):
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
