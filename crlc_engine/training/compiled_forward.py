"""A network's forward run through ``torch.compile``, or eagerly where compiling fails.

``torch.compile`` is lazy: it returns at once, the forward graph is built on the first call
and (with autograd) the backward graph on the first backward. Compiling can fail at each of
these points: ``torch.compile`` itself (a platform without support), the first call (no C++
compiler, an inductor error) or the first backward. :class:`CompiledForward` holds the eager
function and its compiled form, and switches to the eager one for good on
:meth:`CompiledForward.fall_back`; :meth:`CompiledForward.run_first_step` runs a training
step while the compiled forward is on trial, undoing the failed step's effects on the caller's
state before it falls back (so the step is then taken exactly as an eager run would take it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

import torch
from torch import Tensor

__all__ = ["CompiledForward"]

Out = TypeVar("Out")
Saved = TypeVar("Saved")


def _reason(error: BaseException) -> str:
    """The error's type and first line, at most 300 characters."""
    first = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
    return f"{type(error).__name__}: {first}"[:300] if first else type(error).__name__


class CompiledForward(Generic[Out]):
    """``function`` compiled with :func:`torch.compile` (default mode), eager as fallback.

    Args:
        function: The eager forward: views [V, 3, S, S] -> the network's outputs.
        enabled: Whether to compile at all (``False``: always eager, nothing to fall back
            from).

    Attributes:
        fallback_reason: Why it runs eagerly although compiling was asked for (``""``
            otherwise).
        proven: A step with the compiled forward (its backward included) has completed.
    """

    def __init__(self, function: Callable[[Tensor], Out], enabled: bool) -> None:
        self.function = function
        self.fallback_reason = ""
        self.proven = False
        self._compiled: Callable[[Tensor], Out] | None = None
        if enabled:
            try:
                self._compiled = torch.compile(function)
            except Exception as error:  # any failure to compile means eager
                self.fall_back(error)

    @property
    def active(self) -> bool:
        """Whether calls run the compiled forward."""
        return self._compiled is not None

    @property
    def on_trial(self) -> bool:
        """Whether the compiled forward is in use but no step with it has completed."""
        return self.active and not self.proven

    def __call__(self, views: Tensor) -> Out:
        """The outputs of ``views`` [V, 3, S, S] (compiled where active)."""
        forward = self.function if self._compiled is None else self._compiled
        return forward(views)

    def fall_back(self, error: BaseException) -> str:
        """Run eagerly from now on because of ``error``; returns the reason recorded."""
        self._compiled = None
        self.fallback_reason = _reason(error)
        return self.fallback_reason

    def run_first_step(
        self,
        step: Callable[[], None],
        save: Callable[[], Saved],
        restore: Callable[[Saved], None],
    ) -> str | None:
        """Run ``step``; while the compiled forward is on trial, a failure restores what
        ``save`` kept, falls back to eager and runs ``step`` again.

        Args:
            step: One training step that calls this forward (and back-propagates).
            save: Keeps the state a failed step may have changed (generator states,
                BatchNorm statistics); called only while on trial.
            restore: Puts that state back.

        Returns:
            The fallback reason when this call fell back, else ``None``.

        Raises:
            torch.OutOfMemoryError: the step ran out of device memory (not compiling's
                fault: the state is restored, the forward stays compiled, the caller decides).
            Exception: what the eager step raises (a failure that is not compiling's).
        """
        if not self.on_trial:
            step()
            return None
        saved = save()
        try:
            step()
        except torch.OutOfMemoryError:
            restore(saved)
            raise
        except Exception as error:  # compiling failed, in the forward or its backward
            restore(saved)
            reason = self.fall_back(error)
            step()
            return reason
        self.proven = True
        return None
