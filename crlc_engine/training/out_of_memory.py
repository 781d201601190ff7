"""The batch to go on with after a training step ran out of device memory."""

from __future__ import annotations

import torch

from crlc_engine.core.errors import OutOfDeviceMemoryError

__all__ = ["MIN_BATCH_SIZE", "halved_batch"]

#: The smallest batch the training loop halves to: one image and one negative.
MIN_BATCH_SIZE = 2


def halved_batch(
    batch_size: int, device: torch.device, error: BaseException, can_halve: bool = True
) -> int:
    """Half of ``batch_size``, after freeing the device's cached memory.

    Args:
        batch_size: The batch that did not fit.
        device: The training device.
        error: The out-of-memory error (named in the message).
        can_halve: ``False`` for one process of several (the global batch is theirs
            together): the error is raised at once, asking for a smaller ``--batch-size``.

    Raises:
        OutOfDeviceMemoryError: the batch cannot be halved (below :data:`MIN_BATCH_SIZE`,
            or ``can_halve`` is ``False``).
    """
    if device.type == "cuda":
        torch.cuda.empty_cache()
    new = batch_size // 2
    if new >= MIN_BATCH_SIZE and can_halve:
        return new
    smaller = "" if can_halve else "a smaller --batch-size, "
    raise OutOfDeviceMemoryError(
        f"training ran out of {device.type.upper()} memory with a batch of {batch_size} "
        f"images ({error.__class__.__name__}). Close other programs that use the device, "
        f"choose {smaller}a smaller image size or backbone, or train on the CPU (--device cpu)"
    ) from error
