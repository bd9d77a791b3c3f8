"""The profile log-likelihood in one parameter: at each value of it, the others
(and F, inside the problem's own profile) maximised again, for likelihood-ratio
intervals (`Results.conf_int(kind="profile")`)."""

from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np
import optimistix as optx
from jaxtyping import Array, Float

from .._internal import Unflatten, flatten
from ._minimise import GTOL, _minimise
from ._problem import AbstractProblem


class PinnedProblem(AbstractProblem):
    """`problem` in its flat parameters (k,), with the coordinate marked by the
    one-hot `pin` held at `value`.

    The optimiser sees all k coordinates; the pinned one has gradient zero, so
    quasi-Newton steps never move it. `pin` and `value` are arrays, not static:
    one compiled optimiser loop serves every parameter and every trial value.
    """

    problem: AbstractProblem
    unflatten: Unflatten
    pin: Float[Array, " k"]
    value: Float[Array, ""]

    @property
    def static(self):
        return self.problem.static

    @property
    def data(self):
        return self.problem.data

    @property
    def weights(self):
        return self.problem.weights

    def _params(self, flat: Float[Array, " k"]):
        return self.unflatten(jnp.where(self.pin > 0, self.value, flat))

    def loglik(self, params, init=None):
        return self.problem.loglik(self._params(params), init)

    def search_loglik(self, params, init=None):
        return self.problem.search_loglik(self._params(params), init)

    def contributions(self, params):
        return self.problem.contributions(self._params(params))

    def warm_start(self, aux):
        return self.problem.warm_start(aux)

    def certified_start(self, init):
        return self.problem.certified_start(init)

    @property
    def certifies_at_end(self) -> bool:
        return self.problem.certifies_at_end

    def presearch(self, init):
        coarse, cold = self.problem.presearch(init)
        if coarse is None:
            return None, cold
        return PinnedProblem(coarse, self.unflatten, self.pin, self.value), cold


class Trial(NamedTuple):
    """One value of the profile: the log-likelihood maximised with the parameter
    held fixed, whether that maximisation (and its inner solve) converged, whether
    F there has mass on the edge of the support's range, and the warm start for
    the next value."""

    loglik: float
    converged: bool
    at_edge: bool
    start: Any


class PinnedProfile:
    """`profile(j, value, start) -> Trial`: the log-likelihood maximised over every
    parameter but the j-th (flat order), held at `value`.

    `start` is `(flat (k,), inner warm start)`: `start0()` is the estimate's, and
    each call returns the point it reached, so that a sequence of nearby values
    warm-starts each maximisation (and each inner solve) from the previous one.
    With a single parameter there is nothing to maximise: the log-likelihood is
    evaluated (with its inner solve certified) at `value`.
    """

    def __init__(self, problem: AbstractProblem, params, aux, optimizer, max_steps):
        self.problem = problem
        flat, self.unflatten = flatten(params)
        self.flat = np.asarray(flat)
        self.init = problem.warm_start(aux)
        self.optimizer = optimizer
        # max_steps = 0 evaluates the start (see `minimise`).
        self.max_steps = 0 if self.flat.size == 1 else int(max_steps)

    def start0(self) -> tuple[np.ndarray, Any]:
        return self.flat, self.init

    def __call__(self, j: int, value: float, start) -> Trial:
        flat, init = start
        flat = np.array(flat, dtype=np.float64)
        flat[j] = value
        pinned = PinnedProblem(
            self.problem,
            self.unflatten,
            jnp.asarray(np.eye(flat.size)[j]),
            jnp.asarray(value, dtype=jnp.float64),
        )
        out = _minimise(
            pinned,
            jnp.asarray(flat),
            self.optimizer,
            np.asarray(self.max_steps),
            init,
            np.asarray(GTOL),
        )
        loglik = float(out.value)
        inner = getattr(out.aux, "converged", True)
        ok = bool(out.result == optx.RESULTS.successful) and bool(np.all(inner))
        if not np.isfinite(loglik):
            # Nothing to warm-start from there: the next trial starts where this
            # one did.
            return Trial(loglik, ok, False, start)
        at_edge = getattr(self.problem, "at_edge", None)
        edge = False if at_edge is None else at_edge(out.aux)
        reached = np.array(out.params, dtype=np.float64)
        reached[j] = value
        return Trial(loglik, ok, edge, (reached, self.problem.warm_start(out.aux)))
