"""Choosing the compute device, with the reason shown to the user."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from crlc_engine.core.errors import DeviceUnavailableError, InvalidSettingError

if TYPE_CHECKING:
    import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


@dataclass(frozen=True)
class DeviceChoice:
    """A resolved device and why it was chosen."""

    device: torch.device
    reason: str

    @property
    def kind(self) -> str:
        """``cpu``, ``cuda`` or ``mps``."""
        return self.device.type


def _mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(request: str = "auto") -> DeviceChoice:
    """Turn ``auto|cpu|cuda|mps`` (or ``cuda:N``) into a device.

    Args:
        request: What the user asked for.

    Returns:
        The device and a one-line reason.

    Raises:
        DeviceUnavailableError: CUDA or MPS was requested but is not available.
        InvalidSettingError: ``request`` is not a known device name.
    """
    import torch  # imported here: keeps `import crlc_engine.cli.main` free of torch

    name = request.strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return DeviceChoice(
                torch.device("cuda"), f"CUDA GPU found: {torch.cuda.get_device_name(0)}"
            )
        if _mps_available():
            return DeviceChoice(torch.device("mps"), "Apple GPU (MPS) found")
        return DeviceChoice(torch.device("cpu"), "no CUDA or Apple GPU found, using the CPU")
    if name == "cpu":
        return DeviceChoice(torch.device("cpu"), "CPU requested")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceUnavailableError(
                "CUDA was requested but no CUDA GPU is available to PyTorch on this machine "
                f"(torch {torch.__version__}, built for CUDA {torch.version.cuda}); "
                "use --device cpu or auto"
            )
        device = torch.device(name)
        index = device.index or 0
        if index >= torch.cuda.device_count():
            raise DeviceUnavailableError(
                f"{name} requested but only {torch.cuda.device_count()} CUDA device(s) exist"
            )
        return DeviceChoice(device, f"CUDA requested: {torch.cuda.get_device_name(index)}")
    if name == "mps":
        if not _mps_available():
            raise DeviceUnavailableError(
                "Apple MPS was requested but is not available; use --device cpu or auto"
            )
        return DeviceChoice(torch.device("mps"), "Apple GPU (MPS) requested")
    raise InvalidSettingError(
        f"unknown device {request!r}; choose one of {', '.join(DEVICE_CHOICES)}"
    )
