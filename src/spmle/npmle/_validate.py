"""Input checks for the NPMLE: eager messages that name rows, traced flags otherwise.

Both work from the row maxima of the log-likelihood matrix (they propagate NaN, as
XLA's and NumPy's maxima do), which the row shift computes anyway: one pass over
the matrix, no (n, m) temporaries.
"""

import jax.numpy as jnp
import numpy as np

from .._internal import as_float64, as_weights, describe_rows, is_concrete


def check_shapes(log_lik, weights):
    """Convert to float64 and check shapes; returns `(log_lik, weights)`."""
    log_lik = as_float64(log_lik, "log_lik")
    if log_lik.ndim != 2:
        raise ValueError(
            f"`log_lik` must be a 2-D (n observations, m grid points) matrix; got "
            f"shape {log_lik.shape}."
        )
    check_size(*log_lik.shape, name="log_lik")
    return log_lik, as_weights(weights, log_lik.shape[0], "log_lik")


def check_size(n: int, m: int, name: str) -> None:
    if n == 0:
        raise ValueError(f"`{name}` has no rows (n = 0): there is nothing to fit.")
    if m < 2:
        raise ValueError(
            f"`{name}` has m = {m} grid point(s): a mixing distribution on one point "
            "is degenerate (its weight is 1). Use a grid of at least 2 points, or a "
            "parametric fit for a model without a latent variable."
        )


def check_values_eagerly(row_max, weights, name: str = "log_lik") -> None:
    """Raise a `ValueError` naming the offending rows, from the (n,) row maxima of
    the log-likelihood matrix `name`; a no-op when traced."""
    if not is_concrete(row_max, weights):
        return
    row_max = np.asarray(row_max)
    nan_rows, posinf_rows = np.isnan(row_max), row_max == np.inf
    dead_rows = row_max == -np.inf
    w = np.asarray(weights)
    if nan_rows.any():
        raise ValueError(f"`{name}` has NaN entries in {describe_rows(nan_rows)}.")
    if posinf_rows.any():
        raise ValueError(
            f"`{name}` has +inf entries in {describe_rows(posinf_rows)}: a likelihood "
            "must be finite."
        )
    if dead_rows.any():
        raise ValueError(
            f"`{name}` is -inf on the whole grid in {describe_rows(dead_rows)}: no "
            "support point can explain these observations. Widen or refine the grid."
        )
    if not np.isfinite(w).all():
        raise ValueError(
            f"`weights` has non-finite entries in {describe_rows(~np.isfinite(w))}."
        )
    if (w < 0).any():
        raise ValueError(f"`weights` has negative entries in {describe_rows(w < 0)}.")
    if not (w > 0).any():
        raise ValueError("`weights` are all zero: at least one must be positive.")


def host_row_max(log_lik) -> np.ndarray:
    """(n,) row maxima computed on the host: nothing to compile."""
    return np.max(np.asarray(log_lik), axis=1)


def invalid_flag(row_max, weights):
    """The same checks as a traced boolean (for `jit` and `vmap`)."""
    bad_entries = jnp.any(jnp.isnan(row_max) | (row_max == jnp.inf))
    dead_row = jnp.any(row_max == -jnp.inf)
    bad_weights = (
        ~jnp.all(jnp.isfinite(weights)) | jnp.any(weights < 0) | ~jnp.any(weights > 0)
    )
    return bad_entries | dead_row | bad_weights
