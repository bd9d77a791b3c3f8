"""Benchmark problems for the NPMLE solvers.

`scale_mixture_problem` follows the simulated design of the mixSQP paper
(Kim, Carbonetto, Stephens and Anitescu, 2020): observations from a
heavy-tailed mixture and a grid of centred normal scale mixtures, as in
adaptive shrinkage (ashr) with unit standard errors.
"""

from __future__ import annotations

import numpy as np


def scale_mixture_grid(x: np.ndarray, m: int, sigma_min: float = 0.1) -> np.ndarray:
    """Grid of `m` prior scales: 0, then `m - 1` geometric values up to 2 max|x|.

    The first scale is exactly 0 (a point mass at zero). The others run
    geometrically from `sigma_min` (ashr's default with unit standard errors)
    to `2 * max|x|`.
    """
    if m < 2:
        raise ValueError(f"m={m}: need at least two grid points")
    sigma_max = max(2.0 * float(np.max(np.abs(x))), 2.0 * sigma_min)
    rest = np.geomspace(sigma_min, sigma_max, m - 1)
    return np.concatenate([[0.0], rest])


def scale_mixture_problem(seed: int, n: int, m: int) -> np.ndarray:
    """(n, m) float64 matrix of LOG likelihoods for the mixSQP paper's design.

    Data: x_i drawn from 50% N(0, 1), 20% t with 4 degrees of freedom and 30% t
    with 6 degrees of freedom (component labels drawn at random).
    Grid: sigma from `scale_mixture_grid`; L_ik = log N(x_i; 0, 1 + sigma_k^2).
    Deterministic given `seed` (numpy's default_rng).
    """
    n, m = int(n), int(m)
    rng = np.random.default_rng(seed)
    component = rng.choice(3, size=n, p=[0.5, 0.2, 0.3])
    x = np.empty(n)
    normal = component == 0
    t4 = component == 1
    t6 = component == 2
    x[normal] = rng.standard_normal(int(normal.sum()))
    x[t4] = rng.standard_t(4, size=int(t4.sum()))
    x[t6] = rng.standard_t(6, size=int(t6.sum()))

    sigma = scale_mixture_grid(x, m)
    var = 1.0 + sigma**2  # (m,)
    # Fill in row blocks to keep peak memory at about one matrix.
    log_lik = np.empty((n, m), dtype=np.float64)
    inv = -0.5 / var
    const = -0.5 * np.log(2.0 * np.pi * var)
    block = 65536
    for start in range(0, n, block):
        stop = min(start + block, n)
        rows = log_lik[start:stop]
        np.multiply((x[start:stop] ** 2)[:, None], inv[None, :], out=rows)
        rows += const[None, :]
    return log_lik
