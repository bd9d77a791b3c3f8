"""The delta method for functions of theta and of the mixing distribution."""

from collections.abc import Callable

import jax
import numpy as np


def delta_method(
    psi: Callable,
    flat: np.ndarray,
    weights: np.ndarray,
    *,
    cov: np.ndarray,
    bread: np.ndarray,
    scores: Callable[[], np.ndarray],
    influence: Callable[[np.ndarray], np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """Estimate and covariance of `psi(flat, weights)` (a (q,) JAX function of the
    flat parameters and of the observation weights, through which the estimated
    mixing distribution depends on the data at fixed theta).

    The influence of observation i is `G I^-1 s_i + D_i`, with G the total
    derivative in theta and `D_i` the derivative in the weight of observation i at
    fixed theta (its direct effect on F). The variance is
    `G Cov G' + G I^-1 S'D + D'S I^-1 G' + D'D`, where S and D are combined into
    independent units by `influence` (cluster sums for a cluster covariance), so a
    function of theta alone gets exactly `G Cov G'`.
    """
    estimate = np.asarray(psi(flat, weights))
    G = np.asarray(jax.jacfwd(psi, argnums=0)(flat, weights))
    D = influence(np.asarray(jax.jacrev(psi, argnums=1)(flat, weights)).T)
    S = influence(scores())
    cross = G @ bread @ S.T @ D
    return estimate, G @ cov @ G.T + cross + cross.T + D.T @ D
