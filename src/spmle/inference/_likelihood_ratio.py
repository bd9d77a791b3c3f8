"""Likelihood-ratio (profile) intervals: where the profile log-likelihood of one
parameter, the others maximised again, falls `chi2_1(1 - alpha) / 2` below `llf`.

Each endpoint solves `r(b) = z`, with `r(b) = sqrt(2 (llf - L_j(b)))` the root
of the likelihood-ratio statistic and `z = z_{1-alpha/2}` (so `z^2` is the
chi-square quantile). `r` is nearly linear in `b` (exactly `|b - est| / se`
for a quadratic profile), so the secant steps on it land close to the root
from the first bracket; the Wald endpoint, where `r` would equal `z` if the
profile were quadratic, is the first trial.
"""

import math
import warnings
from collections.abc import Callable
from typing import Any

from .._internal import ConvergenceWarning, GridWarning


# The bracket grows outward by at most this factor a trial, and gives up (an
# infinite endpoint) beyond this many Wald half-widths from the estimate.
_GROWTH = 4.0
_MAX_WIDTHS = 1000.0
# A root of r(b) = z to this (in units of r, i.e. of standard errors) or a
# bracket this narrow relative to max(|b|, se) ends the search.
_RTOL_R = 1e-9
_XTOL = 1e-9
_MAX_TRIALS = 100

# (j, value, start) -> Trial(loglik, converged, at_edge, start): see
# `spmle.estimation.PinnedProfile`.
Profile = Callable[[int, float, Any], Any]


class _Side:
    """One side's search: the root statistic at trial values, each maximisation
    warm-started from the previous trial."""

    def __init__(self, profile: Profile, j: int, llf: float, start):
        self.profile, self.j, self.llf, self.start = profile, j, llf, start
        self.converged = True
        self.at_edge = False  # at the last trial value

    def r(self, value: float) -> float:
        trial = self.profile(self.j, value, self.start)
        loglik, self.start, self.at_edge = trial.loglik, trial.start, trial.at_edge
        self.converged &= trial.converged
        if not math.isfinite(loglik):
            # -inf (or a failed evaluation): outside any interval; the bracket
            # then shrinks towards the estimate by bisection.
            return math.inf
        return math.sqrt(2.0 * max(self.llf - loglik, 0.0))


def _bracket(side: _Side, estimate: float, step: float, z: float, sign: int):
    """`(inside, r_inside, outside, r_outside)` with `r_inside < z <= r_outside`,
    growing outward from `estimate + sign * step`; None where `r` stays below
    `z` out to `_MAX_WIDTHS` steps (the likelihood flattens)."""
    inside, r_inside = estimate, 0.0
    distance = step
    while distance <= _MAX_WIDTHS * step:
        value = estimate + sign * distance
        r = side.r(value)
        if r >= z:
            return inside, r_inside, value, r
        inside, r_inside = value, r
        # Linear extrapolation of r to z, kept between 1.5x and `_GROWTH`x.
        factor = z / r if r > 0 else _GROWTH
        distance *= min(max(factor, 1.5), _GROWTH)
    return None


def _solve(side: _Side, bracket, z: float, scale: float) -> float:
    """The root of `r(b) = z` inside `bracket` by regula falsi with the
    Illinois modification: every trial stays inside the bracket, and halving
    the retained end's value keeps the convergence superlinear where `r` is
    curved; bisection where `r` is infinite (the fit failed out there)."""
    a, fa, b, fb = bracket[0], bracket[1] - z, bracket[2], bracket[3] - z
    last = 0
    for _ in range(_MAX_TRIALS):
        x = (a + b) / 2
        if math.isfinite(fb):
            secant = b - fb * (b - a) / (fb - fa)
            if min(a, b) < secant < max(a, b):
                x = secant
        fx = side.r(x) - z
        if abs(fx) <= _RTOL_R:
            return x
        if fx < 0:
            a, fa = x, fx
            if last < 0 and math.isfinite(fb):
                fb /= 2
            last = -1
        else:
            b, fb = x, fx
            if last > 0:
                fa /= 2
            last = 1
        if abs(b - a) <= _XTOL * max(abs(x), scale):
            return x
    return x


def profile_interval(
    profile: Profile,
    start,
    j: int,
    name: str,
    estimate: float,
    se: float,
    llf: float,
    z: float,
    edge_advice: str | None = None,
) -> tuple[float, float]:
    """`(lower, upper)` of parameter `j` (`name` in warnings): the likelihood-ratio
    interval at `z = z_{1-alpha/2}`; an endpoint the profile never reaches
    within `_MAX_WIDTHS` Wald half-widths is infinite, with a warning.
    `edge_advice`: the model's own advice where F reaches the range's edge
    (default: widen the support)."""
    half_width = z * se
    if not (math.isfinite(half_width) and half_width > 0):
        # No usable Wald interval (a singular Hessian): a scale from the value.
        half_width = 0.1 * (1.0 + abs(estimate))
    ends = []
    for sign in (-1, 1):
        side = _Side(profile, j, llf, start)
        bracket = _bracket(side, estimate, half_width, z, sign)
        if bracket is None:
            warnings.warn(
                f"the profile log-likelihood of {name} does not fall "
                f"{z * z / 2:.3g} below its maximum within {_MAX_WIDTHS:g} Wald "
                f"half-widths {'below' if sign < 0 else 'above'} the estimate: "
                f"the {'lower' if sign < 0 else 'upper'} end of its interval is "
                "infinite.",
                stacklevel=4,
            )
            ends.append(sign * math.inf)
            continue
        ends.append(_solve(side, bracket, z, half_width / z))
        end = "lower" if sign < 0 else "upper"
        if side.at_edge:
            # The solver's answer is its last trial: the flag describes it.
            warnings.warn(
                f"the profile interval of {name}: at its {end} end the estimated F "
                "has mass on the edge of the support's range, so the range, not "
                "the data, sets that end: "
                f"{edge_advice or 'widen the support and refit'}.",
                GridWarning,
                stacklevel=4,
            )
        if not side.converged:
            warnings.warn(
                f"the profile interval of {name}: a maximisation over the other "
                "parameters (or an inner solve) did not converge at some trial "
                "value; the endpoint may be inaccurate.",
                ConvergenceWarning,
                stacklevel=4,
            )
    return ends[0], ends[1]
