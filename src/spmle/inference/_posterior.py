"""Empirical Bayes: each unit's posterior over F's support, and its summaries.

With F estimated, unit i's posterior puts weight `p_k G(w_i, v_k) / f(w_i)` on
support point `v_k`. Everything here works on the host (numpy) from the (n, m)
log-likelihoods at F's support, so a frame of a million rows costs one pass over
an (n, atoms) array: summaries use only the points with positive weight.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd


def posterior_log_weights(log_lik, probs, labels=None) -> np.ndarray:
    """(n, m) log posterior weights: `log p_{g(i) k} + l_ik` normalised per row;
    -inf where the prior weight is 0. `probs` is (G, m); `labels` (n,) picks
    each row's group (all 0 by default)."""
    log_lik = np.asarray(log_lik, dtype=np.float64)
    probs = np.atleast_2d(np.asarray(probs, dtype=np.float64))
    rows = probs[0] if labels is None else probs[np.asarray(labels)]
    with np.errstate(divide="ignore"):
        joint = log_lik + np.log(rows)
    joint -= joint.max(axis=1, keepdims=True)
    return joint - np.log(np.exp(joint).sum(axis=1, keepdims=True))


def _quantile(weights, support, q) -> np.ndarray:
    """Per row, the smallest support point with posterior CDF >= q (rounding
    tolerated): an equal-tailed credible bound on F's support."""
    order = np.argsort(support)
    cumulative = np.cumsum(weights[:, order], axis=1)
    index = np.minimum((cumulative < q - 1e-12).sum(axis=1), support.size - 1)
    return support[order][index]


def posterior_frame(weights, support, level: float = 0.95, lfsr: bool = False):
    """One row per unit: posterior `mean`, `sd`, the equal-tailed `lower` and
    `upper` bounds at `level`, and the local false sign rate
    `lfsr = min(P(V <= 0), P(V >= 0))` (Stephens 2017) when `lfsr`. For a
    d-dimensional latent every column is per coordinate (`mean[0]`, ...)."""
    if not 0 < level < 1:
        raise ValueError(f"level={level}: use a probability in (0, 1), e.g. 0.95.")
    weights = np.asarray(weights)
    support = np.asarray(support)
    tail = (1 - level) / 2
    columns = {}
    coordinates = [support] if support.ndim == 1 else list(support.T)
    for j, v in enumerate(coordinates):
        suffix = "" if support.ndim == 1 else f"[{j}]"
        mean = weights @ v
        var = np.maximum(weights @ v**2 - mean**2, 0.0)
        columns["mean" + suffix] = mean
        columns["sd" + suffix] = np.sqrt(var)
        columns["lower" + suffix] = _quantile(weights, v, tail)
        columns["upper" + suffix] = _quantile(weights, v, 1 - tail)
        if lfsr:
            below, above = weights @ (v <= 0), weights @ (v >= 0)
            columns["lfsr" + suffix] = np.minimum(np.minimum(below, above), 1.0)
    return pd.DataFrame(columns)


def sample_posterior(key, log_weights, draws: int, support) -> np.ndarray:
    """(n, draws) (or (n, draws, d)) independent draws of each unit's latent from
    its posterior, with the PRNG `key`."""
    index = jax.random.categorical(
        key, jnp.asarray(log_weights), axis=1, shape=(draws, log_weights.shape[0])
    )
    return np.asarray(support)[np.asarray(index).T]


class PosteriorSource:
    """What `Results` needs for posteriors: the fitted rows' log-likelihoods at
    any support points, each fitted row's group, and where each input row went
    (`inverse`, (n,), when identical rows were compressed; else None)."""

    def __init__(self, log_lik, labels=None, inverse=None):
        self.log_lik = log_lik
        self.labels = None if labels is None else np.asarray(labels)
        self.inverse = None if inverse is None else np.asarray(inverse)

    def expand(self, rows):
        """Rows of the fitted (compressed) data back in input order."""
        return rows if self.inverse is None else rows[self.inverse]
