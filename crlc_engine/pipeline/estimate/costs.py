"""Typical speeds and what each part of a job costs, and the steps a run trains.

The rough figures an estimate uses without a :class:`~.calibration.Calibration` of this
computer, the fixed costs of the job parts around the training steps, and how the quick
preset and a CRLC-semi refine shape their steps.
"""

from __future__ import annotations

from crlc_engine.core.config import QUICK_MAX_STEPS, QUICK_MIN_STEPS, TrainConfig, quick_epochs

# ------------------------------------------------------------------- typical speeds (rough)
#: Images per second (two augmented views each) of a training step at 32 px on 2 CPU cores,
#: per (backbone, resolved stem). ``small`` and ``resnet18`` were measured
#: (docs/benchmarks.md, 2026-11-26); ``resnet34`` and ``resnet50`` are ``resnet18`` scaled by
#: their compute (about 2x and 2.3x ResNet-18's), not measured.
CPU_IMAGES_PER_S: dict[tuple[str, str], float] = {
    ("small", "imagenet"): 1300.0,
    ("small", "cifar"): 315.0,
    ("resnet18", "imagenet"): 315.0,
    ("resnet18", "cifar"): 21.0,
    ("resnet34", "imagenet"): 158.0,
    ("resnet34", "cifar"): 10.5,
    ("resnet50", "imagenet"): 137.0,
    ("resnet50", "cifar"): 9.1,
    # 0.4 x ResNet-18 (ImageNet stem) in one run of benchmarks/train_throughput.py on a loaded
    # machine (ratio only, absolute figures of that run were not usable).
    ("efficientnet_lite0", "imagenet"): 125.0,
    ("efficientnet_lite0", "cifar"): 125.0,
}
#: ResNet-18 with the CIFAR stem at 32 px on a current CUDA GPU (CRLC_NOTES.md: H200 run).
CUDA_RESNET18_IMAGES_PER_S = 18500.0
#: Speed of each backbone on a GPU relative to ResNet-18 (rough, not measured).
CUDA_BACKBONE_FACTOR: dict[str, float] = {
    "small": 3.0,
    "resnet18": 1.0,
    "resnet34": 0.5,
    "resnet50": 0.4,
    "efficientnet_lite0": 0.5,
}
#: The ImageNet stem works on 16x fewer positions; on a GPU that buys much less than on a CPU.
CUDA_IMAGENET_STEM_FACTOR = 4.0
#: An Apple GPU relative to a current CUDA GPU (rough, not measured).
MPS_FACTOR = 1.0 / 6.0
#: Trainable parameters of the whole CRLC model (backbone + heads, 10 clusters), for display;
#: checkpoint sizes come from :func:`checkpoint_size`.
MODEL_PARAMETERS: dict[str, float] = {
    "small": 1.32e6,
    "resnet18": 14.2e6,
    "resnet34": 24.3e6,
    "resnet50": 70.1e6,
    "efficientnet_lite0": 5.0e6,
}
#: Step time of the MemoryBank framework relative to SimCLR at the same batch (one view per
#: image instead of two; docs/benchmarks.md, CPU: 0.53-0.55).
MEMORYBANK_TIME_FACTOR = 0.55
#: The quick preset on a 2-core CPU (benchmarks/imagenette_quick.py, quiet machine, bf16):
#: EfficientNet-Lite0 features at 224 px per second, and seconds per head-training step.
QUICK_CPU_FEATURES_PER_S = 126.0
QUICK_CPU_STEP_S = 0.1
#: A GPU relative to those CPU figures (rough, not measured).
QUICK_GPU_FACTOR = 20.0
#: The quick preset trains at least this many steps (crlc_engine.training.feature_trainer).
#: A frozen stage-2 backbone only runs forward (about a third of a training step).
FROZEN_STAGE2_FACTOR = 1.0 / 3.0
#: Rates above are for 32 px images; the cost grows with the pixel count.
_REFERENCE_SIZE = 32

# ------------------------------------------------------------ job parts around the steps
#: Reading the photos at a training size the pixel cache lacks: starting the decoding
#: processes, then photos per second and process. The rate depends on the photos, which an
#: estimate does not see: 224 px Imagenette JPEGs decode at several hundred per second
#: (2,000 in 6.9 s, 400 in 4.9 s with one process, start included); 12-megapixel camera
#: JPEGs, even at 1/4 scale in the draft mode, at a few dozen. This is a middle value.
DECODE_START_S = 3.5
DECODE_PER_S = 200.0
#: Fixed seconds of a job besides its parts below (opening the library, checking the files,
#: the run folder, naming the groups), and seconds per photo (catalog reads and writes).
JOB_OVERHEAD_S = 0.5
JOB_PER_IMAGE_S = 0.0005
#: The quick preset: loading EfficientNet-Lite0 and finding the neighbours.
QUICK_SETUP_S = 0.5
#: Seconds per epoch besides its steps (the epoch's record, history line and event).
EPOCH_OVERHEAD_S = 0.003
#: Writing a checkpoint (flush and fsync included) against serialising it in memory.
DISK_WRITE_FACTOR = 2.0
#: Serialising a checkpoint in memory, bytes per second, without a calibration.
TYPICAL_SAVE_BYTES_PER_S = 1.0e9
#: An assignment pass (one view, forward only) against a training step per image (two views,
#: forward and backward).
ASSIGN_SPEEDUP = 6.0


def images_per_second(backbone: str, stem: str, size: int, device_kind: str) -> float:
    """Typical training speed (images/s) for a backbone, resolved stem, size and device."""
    scale = (_REFERENCE_SIZE / max(1, size)) ** 2
    if device_kind == "cpu":
        rate = CPU_IMAGES_PER_S.get((backbone, stem), CPU_IMAGES_PER_S[("resnet18", "cifar")])
        return rate * scale
    rate = CUDA_RESNET18_IMAGES_PER_S * CUDA_BACKBONE_FACTOR.get(backbone, 1.0) * scale
    if stem == "imagenet":
        rate *= CUDA_IMAGENET_STEM_FACTOR
    if device_kind == "mps":
        rate *= MPS_FACTOR
    return rate


def is_quick(config: TrainConfig) -> bool:
    """Whether ``config`` trains the quick preset's heads on cached backbone features."""
    return bool(getattr(config, "cached_features", False)) or config.preset == "quick"


def quick_plan(config: TrainConfig, images: int) -> tuple[int, int, int]:
    """Batch, steps per epoch and epochs of the quick preset's heads (``epochs`` raised to
    reach the minimum steps, as :class:`~crlc_engine.training.feature_trainer.FeatureTrainer`
    does)."""
    batch = max(1, min(config.batch_size, images))
    per_epoch = max(1, images // batch)
    epochs = int(config.epochs or 0)
    return batch, per_epoch, quick_epochs(epochs, per_epoch, QUICK_MIN_STEPS, QUICK_MAX_STEPS)


def labelled_factor(config: TrainConfig) -> float:
    """A CRLC-semi step also runs ``labelled_batch`` labelled images (assumed available)."""
    if config.lambda_xent <= 0:
        return 1.0
    return 1.0 + config.labelled_batch / max(1, config.batch_size)
