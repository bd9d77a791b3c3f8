"""The one record of an inner solve, and its status (an `equinox.Enumeration`)."""

import equinox as eqx
from jaxtyping import Array, Bool, Float, Int


class RESULTS(eqx.Enumeration):
    """Status of a solve.

    Compare with `==` (works under `jit` and `vmap`); `RESULTS[item]` gives the
    message. `successful` means the KKT certificate holds to the solver's tolerance
    on every grid point.
    """

    successful = ""
    max_steps_reached = (
        "the solver reached its maximum number of steps before the KKT certificate "
        "held; raise `max_steps` or loosen `tol`"
    )
    stagnation = (
        "the line search could not decrease the objective before the KKT certificate "
        "held (the likelihood matrix may be too badly conditioned)"
    )
    invalid_input = (
        "invalid input: a non-finite log-likelihood entry, a row that is -inf on the "
        "whole grid, or negative, non-finite or all-zero weights (call eagerly, "
        "outside jit, for a message naming the offending row)"
    )


class NPMLESolution(eqx.Module):
    """The outcome of an inner solve: what `spmle.npmle` returns, what every solver
    strategy returns, and (with a leading group axis) what the profile layer keeps.

    Attributes (add a leading batch axis under `vmap`, or one per group):
        probs: (m,) optimal weights on the simplex (NaN on invalid input).
        loglik: () total log-likelihood `sum_i w_i log sum_k exp(l_ik) p_k`, on
            the original scale (row shifts added back; `w_i = 1` by default).
        mean_loglik: () `loglik / sum_i w_i`.
        result: a `spmle.RESULTS` item; `RESULTS.successful` when certified,
            otherwise the real cause (also under `jit`).
        num_steps: () solver iterations (SQP steps for `MixSQP`).
        num_qp_steps: () active-set steps over all QPs (0 for `EM`).
        kkt_violation: () `max_k (d_k - 1)` over ALL grid points, where
            `d_k = sum_i w_i A_ik / (A p)_i` with weights normalised to sum 1.
            It bounds the gap to the optimal mean log-likelihood.
        kkt_support_residual: () `max |d_k - 1|` over the support.
    """

    probs: Float[Array, "*batch m"]
    loglik: Float[Array, "*batch"]
    mean_loglik: Float[Array, "*batch"]
    result: RESULTS
    num_steps: Int[Array, "*batch"]
    num_qp_steps: Int[Array, "*batch"]
    kkt_violation: Float[Array, "*batch"]
    kkt_support_residual: Float[Array, "*batch"]

    @property
    def converged(self) -> Bool[Array, "*batch"]:
        """True where the KKT certificate holds (elementwise over a batch)."""
        return self.result == RESULTS.successful
