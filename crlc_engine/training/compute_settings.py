"""How a network computes on a device: the ``auto`` of the precision, memory-format and
compile settings (:data:`~crlc_engine.core.config.PRECISIONS`,
:data:`~crlc_engine.core.config.MEMORY_FORMATS`,
:data:`~crlc_engine.core.config.COMPILE_CHOICES`) resolved for a device.

Resolving reads only ``device.type`` (and, for a CPU's bfloat16, the CPU's flags): a
``torch.device("cuda")`` resolves on a computer without a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from crlc_engine.core.config import (
    COMPILE_CHOICES,
    MEMORY_FORMATS,
    PRECISIONS,
    TrainConfig,
    choice_check,
    raise_first_problem,
)

__all__ = [
    "ComputeSettings",
    "cpu_runs_bf16_natively",
    "resolve_compile",
    "resolve_memory_format",
    "resolve_precision",
]

#: The torch layout of each resolved memory format.
_TORCH_FORMATS = {
    "contiguous": torch.contiguous_format,
    "channels_last": torch.channels_last,
}


def cpu_runs_bf16_natively() -> bool:
    """Whether this computer's CPU has bfloat16 instructions (AVX512-BF16 or AMX)."""
    return bool(
        getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
        or getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
    )


def resolve_precision(
    precision: str, device: torch.device, *, native_cpu_bf16: bool = False
) -> str:
    """Turn ``auto`` into ``float32`` or ``bfloat16`` for ``device``.

    ``auto`` is ``bfloat16`` on CUDA; on a CPU it is ``bfloat16`` only when
    ``native_cpu_bf16`` is set and the CPU runs bfloat16 natively
    (:func:`cpu_runs_bf16_natively`); ``float32`` otherwise (and on MPS).

    Raises:
        InvalidSettingError: unknown precision.
    """
    raise_first_problem([choice_check("precision", precision, PRECISIONS)])
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bfloat16"
    if device.type == "cpu" and native_cpu_bf16 and cpu_runs_bf16_natively():
        return "bfloat16"
    return "float32"


def resolve_memory_format(memory_format: str, device: torch.device) -> str:
    """Turn ``auto`` into ``channels_last`` (CUDA) or ``contiguous`` (elsewhere).

    Raises:
        InvalidSettingError: unknown memory format.
    """
    raise_first_problem([choice_check("memory format", memory_format, MEMORY_FORMATS)])
    if memory_format != "auto":
        return memory_format
    return "channels_last" if device.type == "cuda" else "contiguous"


def resolve_compile(compile_setting: str, device: torch.device) -> bool:
    """Whether to compile: ``on``, or ``auto`` on CUDA.

    Raises:
        InvalidSettingError: unknown compile setting.
    """
    raise_first_problem([choice_check("compile setting", compile_setting, COMPILE_CHOICES)])
    if compile_setting == "auto":
        return device.type == "cuda"
    return compile_setting == "on"


@dataclass(frozen=True)
class ComputeSettings:
    """How the pixel trainer's network computes, resolved for one device.

    Attributes:
        precision: ``float32`` or ``bfloat16`` (autocast of the network's forward).
        memory_format: ``contiguous`` or ``channels_last`` (weights and input views).
        compile: Whether the forward is to run through ``torch.compile``.
    """

    precision: str
    memory_format: str
    compile: bool

    @classmethod
    def of(cls, config: TrainConfig, device: torch.device) -> ComputeSettings:
        """The settings of ``config`` on ``device`` (``auto`` resolved; a CPU's ``auto``
        precision is float32 even where it has bfloat16 instructions).

        Raises:
            InvalidSettingError: an unknown value.
        """
        return cls(
            precision=resolve_precision(config.precision, device),
            memory_format=resolve_memory_format(config.memory_format, device),
            compile=resolve_compile(config.compile, device),
        )

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """The dtype the forward autocasts to (``None``: no autocast, float32)."""
        return torch.bfloat16 if self.precision == "bfloat16" else None

    @property
    def torch_memory_format(self) -> torch.memory_format:
        """The torch layout of :attr:`memory_format`."""
        return _TORCH_FORMATS[self.memory_format]
