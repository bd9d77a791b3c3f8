"""Progress of the outer optimiser, reported from inside its compiled loop.

Each optimiser step calls `report` on the host (`jax.debug.callback`); a
`Progress` recorder that `fit` activates keeps the history (for
`Results.optimizer_info["history"]`) and, with `verbose`, prints each step as
it happens. With no recorder active (e.g. bootstrap refits under `vmap`) the
callback returns at once, so the compiled program is the same either way.
"""

import sys
import time

import numpy as np


_ACTIVE: list["Progress"] = []


class Progress:
    """A context manager recording (and with `verbose`, printing) outer steps.

    Examples:
        >>> with Progress(verbose=False) as progress:
        ...     report(1, -10.0, 0.5, 1e-9)
        >>> progress.history["objective"]
        [-10.0]
    """

    def __init__(self, verbose: bool = False, stream=None):
        self.verbose = verbose
        self.stream = sys.stdout if stream is None else stream
        self.history = {"step": [], "objective": [], "grad_norm": [], "inner_gap": []}
        self.start = time.perf_counter()

    def __enter__(self) -> "Progress":
        self.start = time.perf_counter()
        _ACTIVE.append(self)
        if self.verbose:
            print(
                f"{'step':>5}  {'log-likelihood':>18}  {'|mean grad|':>11}  "
                f"{'inner gap':>9}  {'time':>8}",
                file=self.stream,
                flush=True,
            )
        return self

    def __exit__(self, *exc) -> None:
        _ACTIVE.remove(self)

    def add(self, value: float, grad_norm: float, gap: float) -> None:
        step = len(self.history["step"]) + 1
        for key, item in zip(self.history, (step, value, grad_norm, gap), strict=True):
            self.history[key].append(item)
        if self.verbose:
            elapsed = time.perf_counter() - self.start
            print(
                f"{step:>5}  {value:>18.8f}  {grad_norm:>11.3e}  {gap:>9.1e}  "
                f"{elapsed:>7.2f}s",
                file=self.stream,
                flush=True,
            )


def report(step, value, grad_norm, gap) -> None:
    """Host side of the optimiser's callback: hand one step to the active
    recorder (batched values, from `vmap`, are not reported)."""
    del step  # the recorder numbers steps across restarts and rounds itself
    if not _ACTIVE or np.ndim(value) != 0:
        return
    _ACTIVE[-1].add(float(value), float(grad_norm), float(gap))


_BARS: list["RefitBar"] = []


class RefitBar:
    """A text progress bar of bootstrap refits (with `verbose`), fed from inside
    the compiled refit loop by `refit_done`.

    Example:
        >>> import io
        >>> out = io.StringIO()
        >>> with RefitBar(4, verbose=True, stream=out) as bar:
        ...     refit_done(np.array([True, True]))
        >>> bar.done, out.getvalue().count("2/4")
        (2, 1)
    """

    def __init__(self, total: int, verbose: bool = False, stream=None, width=30):
        self.total, self.verbose, self.width = int(total), verbose, width
        self.stream = sys.stderr if stream is None else stream
        self.done = 0
        self.start = time.perf_counter()

    def __enter__(self) -> "RefitBar":
        self.start = time.perf_counter()
        _BARS.append(self)
        return self

    def __exit__(self, *exc) -> None:
        _BARS.remove(self)
        if self.verbose:
            print(file=self.stream, flush=True)

    def add(self, count: int) -> None:
        self.done += count
        if self.verbose:
            filled = int(self.width * self.done / max(self.total, 1))
            elapsed = time.perf_counter() - self.start
            print(
                f"\rbootstrap [{'#' * filled}{' ' * (self.width - filled)}] "
                f"{self.done}/{self.total} refits, {elapsed:.1f} s",
                end="",
                file=self.stream,
                flush=True,
            )


def refit_done(converged) -> None:
    """Host side of a batch of refits finishing (any batch shape)."""
    if _BARS:
        _BARS[-1].add(int(np.size(converged)))
