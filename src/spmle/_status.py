"""Outcome of a solve, reported as data (an `equinox.Enumeration`)."""

import equinox as eqx


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
