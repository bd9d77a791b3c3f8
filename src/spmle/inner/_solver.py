"""The strategy interface shared by the NPMLE solvers."""

import abc

import equinox as eqx
from jaxtyping import Array, Bool, Float, Int

from ._operator import AbstractLikelihoodOperator


class SolverOutput(eqx.Module):
    """What a solver hands back before the certificate is taken.

    `x` is a nonnegative vector (not necessarily normalised); `stagnated` says the
    solver stopped because it could make no progress.
    """

    x: Float[Array, " m"]
    num_steps: Int[Array, ""]
    num_qp_steps: Int[Array, ""]
    stagnated: Bool[Array, ""]


class AbstractNPMLESolver(eqx.Module):
    """A strategy that solves `max_{p in simplex} sum_i w_i log (A p)_i`.

    Subclasses hold their hyperparameters as fields and implement `solve`. The
    fields `tol`, `max_steps` and `support_threshold` define the certificate: a
    solution is accepted when `max_k (d_k - 1) <= tol` and `|d_k - 1| <= tol` for
    every `p_k > support_threshold`.
    """

    tol: eqx.AbstractVar[float]
    max_steps: eqx.AbstractVar[int]
    support_threshold: eqx.AbstractVar[float]

    @abc.abstractmethod
    def solve(
        self, op: AbstractLikelihoodOperator, w: Float[Array, " n"]
    ) -> SolverOutput:
        """Solve for the normalised weights `w` (sum 1) and the row-shifted `op`.

        Must terminate promptly when `op` or `w` holds NaN (invalid input is
        flagged by the caller, not replaced).
        """
