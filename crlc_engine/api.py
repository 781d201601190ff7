"""The engine as the command line and the window see it: the one module they may import.

Every name here is loaded on first use (PEP 562 ``__getattr__``), so importing the facade costs
nothing: the command line and the scan workers stay free of torch until a command needs it, and
the window starts before the training code is imported. ``tests/test_structure.py`` checks that
``app/`` and ``crlc_engine/cli/`` import the engine through this module only, and that every
name below resolves.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from crlc_engine import __version__

if TYPE_CHECKING:
    from crlc_engine.bench.run import run_bench
    from crlc_engine.bench.settings import BenchRequest
    from crlc_engine.core.config import (
        BACKBONE_NAMES,
        COMPILE_CHOICES,
        CRITIC_NAMES,
        FRAMEWORKS,
        HEAD_INITS,
        MEMORY_FORMATS,
        OPTIMIZERS,
        PRECISIONS,
        PRETRAINED_BACKBONES,
        STAGE_OPTIMS,
        STEMS,
        TrainConfig,
        clusters_problem,
    )
    from crlc_engine.core.control import (
        JobControl,
    )
    from crlc_engine.core.device import (
        DEVICE_CHOICES,
        DeviceChoice,
        resolve_device,
    )
    from crlc_engine.core.errors import (
        CRLCError,
        ImageNotInLibraryError,
        InvalidSettingError,
        LibraryNotFoundError,
        NoImagesFoundError,
        RunNotFoundError,
        as_user_error,
    )
    from crlc_engine.core.events import (
        BatchReduced,
        EpochEnded,
        Event,
        Reporter,
        TrainingFinished,
        TrainingStarted,
    )
    from crlc_engine.core.fileio import (
        atomic_write_json,
    )
    from crlc_engine.core.memory import return_freed_memory, trim_heap
    from crlc_engine.core.neighbors import (
        NeighborIndex,
    )
    from crlc_engine.library import (
        Catalog,
        Folders,
        ImageLibrary,
        ImageRecord,
        ScanOptions,
        SkippedFile,
        forget_library,
        library_roots,
        list_libraries,
        relink_root,
        scan_folders,
    )
    from crlc_engine.library.decode import (
        HEIF_EXTENSIONS,
        heif_available,
        to_rgb,
    )
    from crlc_engine.library.library import (
        stored_scan_options,
    )
    from crlc_engine.library.runs import (
        RunDir,
        workspace_base,
    )
    from crlc_engine.library.walk import (
        DEFAULT_MAX_FILES,
    )
    from crlc_engine.pipeline.ablation import (
        run_ablation,
    )
    from crlc_engine.pipeline.distributed_jobs import (
        FOLLOWER_TIMEOUT,
        release_followers,
    )
    from crlc_engine.pipeline.estimate import (
        CPU_IMAGES_PER_S,
        MODEL_PARAMETERS,
        Calibration,
        SpeedCache,
        TrainingEstimate,
        estimate_training,
        format_bytes,
        format_duration,
        images_per_second,
        speed_key,
    )
    from crlc_engine.pipeline.feature_method import (
        is_quick,
    )
    from crlc_engine.pipeline.jobs import (
        TrainOutcome,
        assign_run,
        delete_run,
        evaluate_folder,
        list_runs,
        refine_folder,
        refine_settings,
        train_folder,
        train_stage2_folder,
    )
    from crlc_engine.pipeline.pixel_method import (
        follow_jobs,
    )
    from crlc_engine.pipeline.presets import (
        DEFAULT_PRESET_RULE,
        PRESETS,
        PRETRAINED_HINT,
        TORCHVISION_BACKBONES,
        default_preset_name,
        quick_preset_available,
        resolve_train_config,
        torchvision_presets,
        torchvision_problem,
    )
    from crlc_engine.pipeline.request import RunRequest, settings_of
    from crlc_engine.pipeline.run_form import (
        DEVICE_OPTIONS,
        EDITED_FIELDS,
        QUICK_MISSING,
        DeviceOptions,
        PresetChoices,
        RunForm,
        estimate_form,
        preset_values,
        pretrained_box,
    )
    from crlc_engine.results.annotations import (
        Annotations,
    )
    from crlc_engine.results.assignments import (
        ResultStore,
        RunAssignments,
    )
    from crlc_engine.results.cluster_split import (
        MAX_PARTS,
        SplitPlan,
    )
    from crlc_engine.results.export import (
        EXPORT_MODES,
        MANIFEST_PREFIX,
        ExportItem,
        ExportPlanEntry,
        ExportResult,
        UndoResult,
        export_images,
        plan_export,
        undo_export,
    )
    from crlc_engine.results.export_sources import export_items, export_undo_checks
    from crlc_engine.results.groups import (
        NAMED_KEY,
        UNNAMED_KEY,
        GroupStore,
        GroupSummary,
        GroupView,
        default_cluster_name,
        named_key,
    )
    from crlc_engine.training.distributed import DistributedContext, process_group

#: Where each public name lives.
_LOCATIONS: dict[str, str] = {
    "BenchRequest": "crlc_engine.bench.settings",
    "run_bench": "crlc_engine.bench.run",
    "BACKBONE_NAMES": "crlc_engine.core.config",
    "COMPILE_CHOICES": "crlc_engine.core.config",
    "HEAD_INITS": "crlc_engine.core.config",
    "CRITIC_NAMES": "crlc_engine.core.config",
    "FRAMEWORKS": "crlc_engine.core.config",
    "MEMORY_FORMATS": "crlc_engine.core.config",
    "OPTIMIZERS": "crlc_engine.core.config",
    "PRECISIONS": "crlc_engine.core.config",
    "PRETRAINED_BACKBONES": "crlc_engine.core.config",
    "STAGE_OPTIMS": "crlc_engine.core.config",
    "STEMS": "crlc_engine.core.config",
    "TrainConfig": "crlc_engine.core.config",
    "clusters_problem": "crlc_engine.core.config",
    "RunRequest": "crlc_engine.pipeline.request",
    "settings_of": "crlc_engine.pipeline.request",
    "JobControl": "crlc_engine.core.control",
    "DEVICE_CHOICES": "crlc_engine.core.device",
    "DeviceChoice": "crlc_engine.core.device",
    "resolve_device": "crlc_engine.core.device",
    "CRLCError": "crlc_engine.core.errors",
    "ImageNotInLibraryError": "crlc_engine.core.errors",
    "InvalidSettingError": "crlc_engine.core.errors",
    "LibraryNotFoundError": "crlc_engine.core.errors",
    "NoImagesFoundError": "crlc_engine.core.errors",
    "RunNotFoundError": "crlc_engine.core.errors",
    "as_user_error": "crlc_engine.core.errors",
    "BatchReduced": "crlc_engine.core.events",
    "return_freed_memory": "crlc_engine.core.memory",
    "trim_heap": "crlc_engine.core.memory",
    "EpochEnded": "crlc_engine.core.events",
    "Event": "crlc_engine.core.events",
    "Reporter": "crlc_engine.core.events",
    "TrainingFinished": "crlc_engine.core.events",
    "TrainingStarted": "crlc_engine.core.events",
    "atomic_write_json": "crlc_engine.core.fileio",
    "NeighborIndex": "crlc_engine.core.neighbors",
    "Catalog": "crlc_engine.library",
    "Folders": "crlc_engine.library",
    "ImageLibrary": "crlc_engine.library",
    "ImageRecord": "crlc_engine.library",
    "ScanOptions": "crlc_engine.library",
    "SkippedFile": "crlc_engine.library",
    "forget_library": "crlc_engine.library",
    "library_roots": "crlc_engine.library",
    "list_libraries": "crlc_engine.library",
    "relink_root": "crlc_engine.library",
    "scan_folders": "crlc_engine.library",
    "HEIF_EXTENSIONS": "crlc_engine.library.decode",
    "heif_available": "crlc_engine.library.decode",
    "to_rgb": "crlc_engine.library.decode",
    "stored_scan_options": "crlc_engine.library.library",
    "RunDir": "crlc_engine.library.runs",
    "workspace_base": "crlc_engine.library.runs",
    "DEFAULT_MAX_FILES": "crlc_engine.library.walk",
    "run_ablation": "crlc_engine.pipeline.ablation",
    "CPU_IMAGES_PER_S": "crlc_engine.pipeline.estimate",
    "Calibration": "crlc_engine.pipeline.estimate",
    "MODEL_PARAMETERS": "crlc_engine.pipeline.estimate",
    "SpeedCache": "crlc_engine.pipeline.estimate",
    "TrainingEstimate": "crlc_engine.pipeline.estimate",
    "estimate_training": "crlc_engine.pipeline.estimate",
    "format_bytes": "crlc_engine.pipeline.estimate",
    "format_duration": "crlc_engine.pipeline.estimate",
    "images_per_second": "crlc_engine.pipeline.estimate",
    "speed_key": "crlc_engine.pipeline.estimate",
    "TrainOutcome": "crlc_engine.pipeline.jobs",
    "assign_run": "crlc_engine.pipeline.jobs",
    "delete_run": "crlc_engine.pipeline.jobs",
    "evaluate_folder": "crlc_engine.pipeline.jobs",
    "list_runs": "crlc_engine.pipeline.jobs",
    "refine_folder": "crlc_engine.pipeline.jobs",
    "refine_settings": "crlc_engine.pipeline.jobs",
    "train_folder": "crlc_engine.pipeline.jobs",
    "train_stage2_folder": "crlc_engine.pipeline.jobs",
    "DEFAULT_PRESET_RULE": "crlc_engine.pipeline.presets",
    "PRESETS": "crlc_engine.pipeline.presets",
    "PRETRAINED_HINT": "crlc_engine.pipeline.presets",
    "TORCHVISION_BACKBONES": "crlc_engine.pipeline.presets",
    "default_preset_name": "crlc_engine.pipeline.presets",
    "quick_preset_available": "crlc_engine.pipeline.presets",
    "resolve_train_config": "crlc_engine.pipeline.presets",
    "torchvision_presets": "crlc_engine.pipeline.presets",
    "torchvision_problem": "crlc_engine.pipeline.presets",
    "is_quick": "crlc_engine.pipeline.feature_method",
    "FOLLOWER_TIMEOUT": "crlc_engine.pipeline.distributed_jobs",
    "release_followers": "crlc_engine.pipeline.distributed_jobs",
    "follow_jobs": "crlc_engine.pipeline.pixel_method",
    "DistributedContext": "crlc_engine.training.distributed",
    "process_group": "crlc_engine.training.distributed",
    "DEVICE_OPTIONS": "crlc_engine.pipeline.run_form",
    "EDITED_FIELDS": "crlc_engine.pipeline.run_form",
    "QUICK_MISSING": "crlc_engine.pipeline.run_form",
    "DeviceOptions": "crlc_engine.pipeline.run_form",
    "PresetChoices": "crlc_engine.pipeline.run_form",
    "RunForm": "crlc_engine.pipeline.run_form",
    "estimate_form": "crlc_engine.pipeline.run_form",
    "preset_values": "crlc_engine.pipeline.run_form",
    "pretrained_box": "crlc_engine.pipeline.run_form",
    "Annotations": "crlc_engine.results.annotations",
    "ResultStore": "crlc_engine.results.assignments",
    "RunAssignments": "crlc_engine.results.assignments",
    "MAX_PARTS": "crlc_engine.results.cluster_split",
    "SplitPlan": "crlc_engine.results.cluster_split",
    "EXPORT_MODES": "crlc_engine.results.export",
    "export_items": "crlc_engine.results.export_sources",
    "export_undo_checks": "crlc_engine.results.export_sources",
    "ExportItem": "crlc_engine.results.export",
    "ExportPlanEntry": "crlc_engine.results.export",
    "ExportResult": "crlc_engine.results.export",
    "MANIFEST_PREFIX": "crlc_engine.results.export",
    "UndoResult": "crlc_engine.results.export",
    "export_images": "crlc_engine.results.export",
    "plan_export": "crlc_engine.results.export",
    "undo_export": "crlc_engine.results.export",
    "GroupStore": "crlc_engine.results.groups",
    "GroupSummary": "crlc_engine.results.groups",
    "GroupView": "crlc_engine.results.groups",
    "NAMED_KEY": "crlc_engine.results.groups",
    "UNNAMED_KEY": "crlc_engine.results.groups",
    "default_cluster_name": "crlc_engine.results.groups",
    "named_key": "crlc_engine.results.groups",
}

__all__ = [
    "BACKBONE_NAMES",
    "COMPILE_CHOICES",
    "CPU_IMAGES_PER_S",
    "CRITIC_NAMES",
    "DEFAULT_MAX_FILES",
    "DEFAULT_PRESET_RULE",
    "DEVICE_CHOICES",
    "DEVICE_OPTIONS",
    "EDITED_FIELDS",
    "EXPORT_MODES",
    "FOLLOWER_TIMEOUT",
    "FRAMEWORKS",
    "HEAD_INITS",
    "HEIF_EXTENSIONS",
    "MANIFEST_PREFIX",
    "MAX_PARTS",
    "MEMORY_FORMATS",
    "MODEL_PARAMETERS",
    "NAMED_KEY",
    "OPTIMIZERS",
    "PRECISIONS",
    "PRESETS",
    "PRETRAINED_BACKBONES",
    "PRETRAINED_HINT",
    "QUICK_MISSING",
    "STAGE_OPTIMS",
    "STEMS",
    "TORCHVISION_BACKBONES",
    "UNNAMED_KEY",
    "Annotations",
    "BatchReduced",
    "BenchRequest",
    "CRLCError",
    "Calibration",
    "Catalog",
    "DeviceChoice",
    "DeviceOptions",
    "DistributedContext",
    "EpochEnded",
    "Event",
    "ExportItem",
    "ExportPlanEntry",
    "ExportResult",
    "Folders",
    "GroupStore",
    "GroupSummary",
    "GroupView",
    "ImageLibrary",
    "ImageNotInLibraryError",
    "ImageRecord",
    "InvalidSettingError",
    "JobControl",
    "LibraryNotFoundError",
    "NeighborIndex",
    "NoImagesFoundError",
    "PresetChoices",
    "Reporter",
    "ResultStore",
    "RunAssignments",
    "RunDir",
    "RunForm",
    "RunNotFoundError",
    "RunRequest",
    "ScanOptions",
    "SkippedFile",
    "SpeedCache",
    "SplitPlan",
    "TrainConfig",
    "TrainOutcome",
    "TrainingEstimate",
    "TrainingFinished",
    "TrainingStarted",
    "UndoResult",
    "__version__",
    "as_user_error",
    "assign_run",
    "atomic_write_json",
    "clusters_problem",
    "default_cluster_name",
    "default_preset_name",
    "delete_run",
    "estimate_form",
    "estimate_training",
    "evaluate_folder",
    "export_images",
    "export_items",
    "export_undo_checks",
    "follow_jobs",
    "forget_library",
    "format_bytes",
    "format_duration",
    "heif_available",
    "images_per_second",
    "is_quick",
    "library_roots",
    "list_libraries",
    "list_runs",
    "named_key",
    "plan_export",
    "preset_values",
    "pretrained_box",
    "process_group",
    "quick_preset_available",
    "refine_folder",
    "refine_settings",
    "release_followers",
    "relink_root",
    "resolve_device",
    "resolve_train_config",
    "return_freed_memory",
    "run_ablation",
    "run_bench",
    "scan_folders",
    "settings_of",
    "speed_key",
    "stored_scan_options",
    "to_rgb",
    "torchvision_presets",
    "torchvision_problem",
    "train_folder",
    "train_stage2_folder",
    "trim_heap",
    "undo_export",
    "workspace_base",
]


def __getattr__(name: str) -> Any:
    """The value of ``name`` in the module that holds it (imported on first use)."""
    module = _LOCATIONS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    # not kept here: the module's current value is what callers get (tests replace some)
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return list(__all__)
