"""Drop-in replacement for spmlex's `profile_ll`.

Change only the import line of spmlex code::

    from spmle.compat import profile_ll   # was: from spmlex import profile_ll

Differences, all deliberate: the value and its gradient come from one function
(spmlex returns the mean divided by n as the value but the gradient of the mean);
`weights` are observation weights (n,) (spmlex's per-group weights entered only
the value); a failed inner solve raises instead of returning `inf`.
"""

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from .contract import AbstractModel, nobs
from .npmle import AbstractNPMLESolver, MixSQP
from .profile import profile_loglik


class _LclkModel(AbstractModel):
    """Adapts a model with spmlex's `lclk(data, supp)` method."""

    model: eqx.Module

    def log_cond_lik(self, data, support):
        return self.model.lclk(data, support)


def profile_ll(
    model,
    data,
    supp,
    endog_dummies=None,
    weights=None,
    *,
    solver: AbstractNPMLESolver = MixSQP(),
):
    """spmlex's `profile_ll`: `(-L*(theta) / sum(weights), probs (m, G))`.

    Args:
        model: an equinox Module with a `lclk(data, supp) -> (n, m)` method.
        data: dict of arrays with leading axis n.
        supp: (m,) support grid.
        endog_dummies: optional (n, G) boolean group indicators (one True per row).
        weights: optional (n,) or (n, 1) observation weights.

    Returns:
        The negative mean profile log-likelihood (a scalar, differentiable in the
        model: use `has_aux=True`) and the optimal weights, (m, G).

    Examples:
        >>> import jax, jax.numpy as jnp, spmle
        >>> jax.config.update("jax_enable_x64", True)
        >>> from spmle.compat import profile_ll
        >>> class Model(spmle.models.LinearFactor):
        ...     def lclk(self, data, supp):
        ...         return self.log_cond_lik(data, supp)
        >>> model = Model(jnp.array([1.5, 0.3]), jnp.zeros(3))
        >>> data = model.simulate(jax.random.key(0), jnp.array([-3.0, 0.0, 5.0]),
        ...                       jnp.array([0.3, 0.5, 0.2]), 200)
        >>> value, probs = profile_ll(model, data, jnp.linspace(-6, 6, 75))
        >>> probs.shape
        (75, 1)
    """
    groups = None
    if endog_dummies is not None:
        dummies = np.asarray(endog_dummies).astype(bool)
        if dummies.ndim != 2 or not np.all(dummies.sum(axis=1) == 1):
            raise ValueError(
                "`endog_dummies` must be an (n, G) boolean matrix with exactly one "
                "True per row."
            )
        groups = np.argmax(dummies, axis=1)
    if weights is not None:
        weights = jnp.reshape(jnp.asarray(weights, dtype=jnp.float64), (-1,))
    value, info = profile_loglik(
        _LclkModel(model), data, supp, groups=groups, weights=weights, solver=solver
    )
    total = nobs(data) if weights is None else jnp.sum(weights)
    return -value / total, info.probs.T
