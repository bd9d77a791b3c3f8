"""Input checks for the NPMLE: eager messages that name rows, traced flags otherwise."""

import jax.numpy as jnp
import numpy as np

from .._x64 import as_float64, as_weights, is_concrete


def check_shapes(log_lik, weights):
    """Convert to float64 and check shapes; returns `(log_lik, weights)`."""
    log_lik = as_float64(log_lik, "log_lik")
    if log_lik.ndim != 2:
        raise ValueError(
            f"`log_lik` must be a 2-D (n observations, m grid points) matrix; got "
            f"shape {log_lik.shape}."
        )
    n, m = log_lik.shape
    if n == 0:
        raise ValueError("`log_lik` has no rows (n = 0): there is nothing to fit.")
    if m < 2:
        raise ValueError(
            f"`log_lik` has m = {m} grid point(s): a mixing distribution on one point "
            "is degenerate (its weight is 1). Use a grid of at least 2 points, or a "
            "parametric fit for a model without a latent variable."
        )
    return log_lik, as_weights(weights, n, "log_lik")


def _rows(mask: np.ndarray, limit: int = 5) -> str:
    rows = np.flatnonzero(mask)
    shown = ", ".join(str(r) for r in rows[:limit])
    more = f" and {rows.size - limit} more" if rows.size > limit else ""
    return f"row{'s' if rows.size > 1 else ''} {shown}{more}"


def check_values_eagerly(log_lik, weights, name: str = "log_lik") -> None:
    """Raise a `ValueError` naming the offending rows; no-op when traced."""
    if not is_concrete(log_lik, weights):
        return
    # Row maxima on the host (NumPy's propagate NaN, as XLA's do): one pass over
    # the matrix, no (n, m) temporaries and nothing to compile.
    row_max = np.max(np.asarray(log_lik), axis=1)
    nan_rows, posinf_rows = np.isnan(row_max), row_max == np.inf
    dead_rows = row_max == -np.inf
    w = np.asarray(weights)
    if nan_rows.any():
        raise ValueError(f"`{name}` has NaN entries in {_rows(nan_rows)}.")
    if posinf_rows.any():
        raise ValueError(
            f"`{name}` has +inf entries in {_rows(posinf_rows)}: a likelihood must "
            "be finite."
        )
    if dead_rows.any():
        raise ValueError(
            f"`{name}` is -inf on the whole grid in {_rows(dead_rows)}: no support "
            "point can explain these observations. Widen or refine the grid."
        )
    if not np.isfinite(w).all():
        raise ValueError(
            f"`weights` has non-finite entries in {_rows(~np.isfinite(w))}."
        )
    if (w < 0).any():
        raise ValueError(f"`weights` has negative entries in {_rows(w < 0)}.")
    if not (w > 0).any():
        raise ValueError("`weights` are all zero: at least one must be positive.")


def invalid_flag(row_max, weights):
    """The same checks as a traced boolean (for `jit` and `vmap`), from the row
    maxima of the log-likelihood matrix (they propagate NaN), which the row shift
    computes anyway: no (n, m) boolean temporaries."""
    bad_entries = jnp.any(jnp.isnan(row_max) | (row_max == jnp.inf))
    dead_row = jnp.any(row_max == -jnp.inf)
    bad_weights = (
        ~jnp.all(jnp.isfinite(weights)) | jnp.any(weights < 0) | ~jnp.any(weights > 0)
    )
    return bad_entries | dead_row | bad_weights
