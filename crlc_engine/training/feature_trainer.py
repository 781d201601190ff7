"""CRLC heads trained on cached, frozen backbone features (the ``quick`` mode), two-stage style.

Inputs are the backbone features [N, d] standardised per dimension with their own mean and
standard deviation (fed L2-normalised features directly, every sub-head stays at the uniform
saddle point of L_PC: all images in one cluster, see ``CRLC_NOTES.md``). The positive of an
image is a neighbour drawn uniformly from its K nearest neighbours (FAISS inner product on the
L2-normalised raw features, itself excluded), as in stage 2 of two-stage CRLC.

Both losses see the pair (image, sampled neighbour):

* L_PC, marginal entropy and logit guard per sub-head exactly as in end-to-end CRLC
  (:func:`crlc_engine.losses.crlc_loss` with the neighbour in the place of the second view);
* L_FC is the same NT-Xent on the RL-head outputs z of the image and of its neighbour: with
  no pixel views, the neighbour is the "other view" (SCAN's and two-stage CRLC's positive);
  feature dropout (0.2 by default) and optional Gaussian noise on the standardised inputs act
  as a mild feature-space augmentation of both rows.

One permutation per epoch from a CPU generator, ``floor(N / batch)`` steps; neighbour draws
and feature noise come from a second generator. Both states, the position in the epoch, the
standardisation statistics and the neighbour table are checkpointed, so a resumed run
continues exactly (bit-identical on the CPU). Adam, lr 1e-3, batch 256, 20 epochs but at
least 300 steps by default (measured on Imagenette features: accuracy is flat from about 150 steps
on; see ``docs/benchmarks.md``). The budget, pace, epoch records, checkpoints, resume,
cancel and pause are the shared loop's (:class:`~crlc_engine.training.loop.TrainingLoop`);
the settings are :class:`~crlc_engine.training.quick_settings.QuickSettings`.

Note: with the backbone frozen, the RL-head and the C-head share no trainable parameter, so
L_FC trains the RL-head only (the 128-d z stored for similarity search) and cannot change the
clusters: lambda_FC 0 and 1 give bit-identical cluster probabilities.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from crlc_engine.core.config import quick_epochs
from crlc_engine.core.errors import CheckpointError, InvalidSettingError
from crlc_engine.core.events import Reporter
from crlc_engine.core.neighbors import all_pairs_knn
from crlc_engine.losses import crlc_loss
from crlc_engine.losses.group_cross_entropy import group_cross_entropy
from crlc_engine.training.checkpoint import grow_cluster_columns, load_checkpoint
from crlc_engine.training.epoch_stats import add_step_sums
from crlc_engine.training.feature_heads import FeatureHeads
from crlc_engine.training.frozen_features import resolve_precision
from crlc_engine.training.heads_adam import HeadsAdam
from crlc_engine.training.inference import Predictions
from crlc_engine.training.loop import TrainingLoop
from crlc_engine.training.neighbor_positives import sample_neighbor_positives
from crlc_engine.training.quick_settings import QuickSettings

__all__ = [
    "CHECKPOINT_KIND",
    "FeatureTrainer",
    "QuickSettings",
    "mine_neighbors",
    "standardization",
]

CHECKPOINT_KIND = "feature_heads"
_STD_FLOOR = 1e-6
#: Head settings a checkpoint must share with the trainer that continues it.
_HEAD_STRUCTURE = ("clusters", "subheads", "hidden", "feature_dim")


def standardization(features: Tensor) -> tuple[Tensor, Tensor]:
    """Per-dimension mean and standard deviation (population, floored at 1e-6) of [N, d]."""
    mean = features.mean(dim=0)
    std = features.std(dim=0, unbiased=False).clamp_min(_STD_FLOOR)
    return mean, std


def mine_neighbors(features: np.ndarray, k: int, threads: int | None = None) -> np.ndarray:
    """The K nearest other images of every image: int64 [N, min(K, N - 1)].

    Cosine similarity (inner product of L2-normalised rows) with FAISS, exact up to
    :data:`crlc_engine.core.neighbors.EXACT_MAX` images, HNSW above. A row of zeros (possible after
    the backbone's final ReLU, e.g. for a blank image) has no direction: it is searched as the
    all-ones direction, i.e. next to the images whose features are most evenly spread.
    """
    x = np.asarray(features, dtype=np.float32)
    blank = ~np.any(x != 0, axis=1)
    if blank.any():  # a copy only then: the caller's features stay as they are
        x = x.copy()
        x[blank] = 1.0
    table: np.ndarray = all_pairs_knn(x, k=k, threads=threads).ids
    return table.astype(np.int64)


class FeatureTrainer(TrainingLoop):
    """Trains :class:`FeatureHeads` on cached features with kNN positives.

    Args:
        settings: Head-training settings.
        features: Raw backbone features [N, d] (float32, numpy or torch).
        device: Training device.
        checkpoint_path: Where checkpoints go (``None``: never written).
        history_path: Where one JSON line per epoch is appended (``None``: not written).
        run_id: Shown in events.
        labelled: CRLC-semi: (rows [L], targets [L] in 0..C-1); each step adds
            ``lambda_xent`` x the cross-entropy of every sub-head on ``labelled_batch``
            labelled rows drawn uniformly.
        neighbors: A ready neighbour table [N, K'] (else mined when training starts).
        extra_state: Stored with every checkpoint (e.g. the run's settings, the feature spec).
    """

    extra_parts = ("xent",)
    network_key = "heads"
    step_generator_key = "sample_generator"

    def __init__(
        self,
        settings: QuickSettings,
        features: np.ndarray | Tensor,
        device: torch.device | None = None,
        checkpoint_path: Path | None = None,
        history_path: Path | None = None,
        run_id: str = "",
        labelled: tuple[np.ndarray, np.ndarray] | None = None,
        neighbors: np.ndarray | None = None,
        extra_state: dict[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self.extra_state = dict(extra_state or {})
        raw = torch.as_tensor(np.asarray(features, dtype=np.float32))
        if raw.dim() != 2 or raw.shape[0] < 2:
            raise InvalidSettingError(f"features must be [N >= 2, d], got {list(raw.shape)}")
        if not bool(torch.isfinite(raw).all()):
            raise InvalidSettingError("the features contain NaN or infinite values")
        n, d = raw.shape
        device = device or torch.device("cpu")
        super().__init__(settings, n, device, checkpoint_path, history_path, run_id)
        self.raw = raw
        self.in_dim = d
        self.mean, self.std = standardization(raw)
        self.inputs = self._standardize(raw)
        if neighbors is not None:
            self.set_neighbors(neighbors)
        self._use_labelled(labelled)
        self.autocast = resolve_precision(settings.precision, self.device) == "bfloat16"
        torch.manual_seed(settings.seed)
        self.heads = FeatureHeads(
            d, settings.hidden, settings.clusters, settings.subheads, settings.feature_dim
        ).to(self.device)
        self.optimizer = HeadsAdam(self.heads, settings.lr, settings.weight_decay)
        self.loss_config = settings.loss_settings()
        self.sample_generator = torch.Generator(device=self.device).manual_seed(settings.seed + 1)

    @property
    def network(self) -> nn.Module:
        return self.heads

    @property
    def step_generator(self) -> torch.Generator:
        return self.sample_generator

    # ------------------------------------------------------------------ data
    def _standardize(self, raw: Tensor) -> Tensor:
        return ((raw - self.mean) / self.std).to(self.device)

    def set_standardization(self, mean: Tensor, std: Tensor) -> None:
        """Use these statistics (e.g. a parent run's) instead of the features' own."""
        if mean.shape != (self.in_dim,) or std.shape != (self.in_dim,):
            raise CheckpointError(
                f"standardisation statistics are for {list(mean.shape)}-d features, "
                f"not {self.in_dim}-d"
            )
        self.mean, self.std = mean.float().cpu(), std.float().cpu()
        self.inputs = self._standardize(self.raw)

    def _ensure_neighbors(self, reporter: Reporter) -> Tensor:
        if self.neighbors is None:
            reporter.status(
                f"Finding the {min(self.settings.neighbors, self.num_images - 1)} nearest "
                f"neighbours of {self.num_images} images"
            )
            table = mine_neighbors(
                self.raw.numpy(), self.settings.neighbors, threads=torch.get_num_threads()
            )
            self.set_neighbors(table)
        assert self.neighbors is not None
        return self.neighbors

    @property
    def target_epochs(self) -> int | None:
        """Epochs to train: ``epochs`` within ``max_steps``, raised to reach ``min_steps``
        (``None``: time budget)."""
        settings = self.settings
        if settings.epochs is None:
            return None
        return quick_epochs(
            settings.epochs, self.steps_per_epoch, settings.min_steps, settings.max_steps
        )

    def _prepare_fit(self, reporter: Reporter) -> None:
        """Mine the neighbours if none were given; say when the step limits change the
        epochs."""
        self._ensure_neighbors(reporter)
        settings, target = self.settings, self.target_epochs
        if target is None or settings.epochs is None or target == settings.epochs:
            return
        limit = (
            f"at least {settings.min_steps}"
            if target > settings.epochs
            else f"at most {settings.max_steps}"
        )
        reporter.status(
            f"{settings.epochs} epochs asked for, but the grouping heads train for {limit} "
            f"steps and {self.num_images} images make {self.steps_per_epoch} step(s) per "
            f"epoch: training {target} epochs instead"
        )

    def _train_mode(self) -> None:
        self.heads.train()

    # ------------------------------------------------------------------ one step
    def _view(self, x: Tensor) -> Tensor:
        """Feature-space augmentation of standardised rows [B, d] (identity by default)."""
        settings = self.settings
        if settings.feature_dropout > 0:
            keep = 1.0 - settings.feature_dropout
            mask = torch.rand(x.shape, generator=self.sample_generator, device=x.device) < keep
            x = x * mask / keep
        if settings.feature_noise > 0:
            noise = torch.randn(x.shape, generator=self.sample_generator, device=x.device)
            x = x + settings.feature_noise * noise
        return x

    def _step(self, indices: Tensor, knn: Tensor | None = None) -> None:
        """One step on the anchors ``indices`` and neighbours drawn from ``knn`` (default:
        the trainer's table)."""
        knn = self.neighbors if knn is None else knn
        if knn is None:
            raise InvalidSettingError("the neighbour table is not set (set_neighbors)")
        b = indices.shape[0]
        positives = sample_neighbor_positives(knn, indices, self.sample_generator)
        parts = [self._view(self.inputs[indices]), self._view(self.inputs[positives])]
        labelled = self._labelled_batch()
        if labelled is not None:
            parts.append(self._view(self.inputs[labelled[0]]))
        with_z = self.loss_config.lambda_fc > 0
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            out = self.heads(torch.cat(parts), with_z=with_z)
        z = out.z
        loss = crlc_loss(
            None if z is None else z[:b],
            None if z is None else z[b : 2 * b],
            out.logits[:, :b],
            out.logits[:, b : 2 * b],
            self.loss_config,
        )
        objective = loss.total
        xent = torch.zeros((), device=self.device)
        if labelled is not None:
            logits = out.logits[:, 2 * b :].float()  # [H, L, C]
            xent = group_cross_entropy(logits.flatten(0, 1), labelled[1].repeat(logits.shape[0], 1))
            objective = objective + self.settings.lambda_xent * xent
        self._optimizer_step(objective)
        add_step_sums(self._sums, loss, out.logits[:, :b], {"xent": xent})

    # ------------------------------------------------------------------ outputs
    @torch.no_grad()
    def predict(
        self, features: np.ndarray | Tensor | None = None, batch_size: int = 1024
    ) -> Predictions:
        """Probabilities of every sub-head [H, N, C] and z [N, feature_dim] (no augmentation).

        Args:
            features: Raw features [M, d] to assign (default: the training features), put
                through this trainer's standardisation.
            batch_size: Rows per forward pass (1,024: the sub-heads' hidden activations of a
                pass are then 10 MB; 4,096 raised the peak memory of 13k images by 50 MB).
        """
        inputs = (
            self.inputs
            if features is None
            else self._standardize(torch.as_tensor(np.asarray(features, dtype=np.float32)))
        )
        self.heads.eval()
        probs: list[Tensor] = []
        feats: list[Tensor] = []
        for start in range(0, inputs.shape[0], batch_size):
            out = self.heads(inputs[start : start + batch_size])
            assert out.z is not None
            probs.append(torch.softmax(out.logits.float(), dim=-1).cpu())
            feats.append(out.z.cpu())
        self.heads.train()
        return Predictions(
            probabilities=torch.cat(probs, dim=1).numpy(),
            features=torch.cat(feats, dim=0).numpy(),
        )

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue training exactly or to assign new features."""
        return {
            **self.extra_state,
            "kind": CHECKPOINT_KIND,
            "settings": self.settings.as_dict(),
            "in_dim": self.in_dim,
            "standardization": {"mean": self.mean.clone(), "std": self.std.clone()},
            "neighbors": None if self.neighbors is None else self.neighbors.cpu().int(),
            "knn": {
                "k": self.settings.neighbors,
                "similarity": "cosine (inner product of L2-normalised raw features)",
            },
            **self._loop_state(),
        }

    @staticmethod
    def read(path: Path) -> dict[str, Any]:
        """A checkpoint written by a :class:`FeatureTrainer`.

        Raises:
            CheckpointError: unreadable, or not a feature-heads checkpoint.
        """
        state = load_checkpoint(path)
        if state.get("kind") != CHECKPOINT_KIND:
            raise CheckpointError(f"{path} is not a checkpoint of heads on cached features")
        return state

    def _check_structure(self, state: dict[str, Any], source: Path, names: tuple[str, ...]) -> None:
        saved = state["settings"]
        if int(state["in_dim"]) != self.in_dim:
            raise CheckpointError(
                f"checkpoint {source} was trained on {state['in_dim']}-d features, "
                f"not {self.in_dim}-d"
            )
        for name in names:
            if saved[name] != getattr(self.settings, name):
                raise CheckpointError(
                    f"checkpoint {source} was trained with {name}={saved[name]!r}, "
                    f"not {getattr(self.settings, name)!r}"
                )

    def _read_for_resume(self, source: Path) -> dict[str, Any]:
        state = self.read(source)
        self._check_structure(state, source, _HEAD_STRUCTURE)
        self._check_num_images(state, source)
        return state

    def _restore_method_state(self, state: dict[str, Any], source: Path, resumable: bool) -> None:
        """The standardisation statistics and the neighbour table."""
        norm = state["standardization"]
        self.set_standardization(norm["mean"], norm["std"])
        if state["neighbors"] is not None:
            self.set_neighbors(state["neighbors"])

    def load_heads(self, path: Path) -> None:
        """Take a checkpoint's trained heads and standardisation only (to assign with them).

        Raises:
            CheckpointError: unreadable, or other head settings.
        """
        state = self.read(path)
        self._check_structure(state, path, _HEAD_STRUCTURE)
        norm = state["standardization"]
        self.set_standardization(norm["mean"], norm["std"])
        self.heads.load_state_dict(state["heads"])

    def init_from_parent(self, path: Path) -> None:
        """Start from a parent run's heads and standardisation (not its optimiser or position).

        The C-head may have more clusters than the parent's (CRLC-semi with more classes than
        clusters): the parent's output columns are copied, new ones keep their initialisation.

        Raises:
            CheckpointError: unreadable, or different features / head widths.
        """
        state = self.read(path)
        self._check_structure(state, path, ("subheads", "hidden", "feature_dim"))
        norm = state["standardization"]
        self.set_standardization(norm["mean"], norm["std"])
        weights = dict(state["heads"])
        grow_cluster_columns(weights, self.heads.state_dict(), ("weight2", "bias2"))
        self.heads.load_state_dict(weights)
