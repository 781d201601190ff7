"""The memory peak of a measurement (:class:`PeakMemory`).

On CUDA: ``torch.cuda.max_memory_allocated`` (tensors the caching allocator handed out; its
reserve and the CUDA context are not counted). Elsewhere: this process's peak resident set
size, ``VmHWM`` of ``/proc/self/status`` (reset between measurements through
``/proc/self/clear_refs`` where the kernel allows it), else ``getrusage``'s ``ru_maxrss``
(never reset: a peak since the process started). DataLoader worker processes are not counted.
"""

from __future__ import annotations

import contextlib
import re
import sys
from pathlib import Path

import torch

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
#: What ``/proc/self/clear_refs`` takes to reset the peak resident set size (Linux).
_RESET_PEAK_RSS = "5"


def _vm_hwm_bytes() -> int | None:
    """``VmHWM`` of this process in bytes, or ``None`` where ``/proc`` does not give it."""
    try:
        found = re.search(r"^VmHWM:\s+(\d+)\s+kB", _STATUS.read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(found.group(1)) * 1024 if found else None


def _max_rss_bytes() -> int:
    """``ru_maxrss`` of this process in bytes (kB on Linux, bytes on macOS); 0 without
    :mod:`resource` (Windows)."""
    try:
        import resource
    except ImportError:
        return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


class PeakMemory:
    """Resettable memory peak of one device.

    Attributes:
        source: What the figures are, in words (shown with them).
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        if device.type == "cuda":
            self.source = "torch.cuda.max_memory_allocated"
        elif _vm_hwm_bytes() is not None:
            self.source = "process peak RSS (VmHWM of /proc/self/status)"
        else:
            self.source = "process peak RSS (getrusage ru_maxrss, since the process started)"

    def reset(self) -> None:
        """Start a new peak (where the platform allows; see the module docstring)."""
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        with contextlib.suppress(OSError):
            _CLEAR_REFS.write_text(_RESET_PEAK_RSS)

    def peak_bytes(self) -> int:
        """The peak since the last :meth:`reset`, in bytes."""
        if self.device.type == "cuda":
            return int(torch.cuda.max_memory_allocated(self.device))
        hwm = _vm_hwm_bytes()
        return _max_rss_bytes() if hwm is None else hwm
