"""Covariance estimators for theta from the observed profile information."""

import warnings

import numpy as np

from .._warnings import HessianWarning


# Above this condition number the inverse information is numerically meaningless.
_MAX_CONDITION = 1e10


def inverse_information(hessian: np.ndarray, names: list[str]) -> np.ndarray:
    """`(-H)^{-1}` for the Hessian `H` of the total log-likelihood.

    A Hessian that is not negative definite, or whose condition number exceeds
    1e10, gives a `HessianWarning` naming the parameters in the offending
    directions, and a NaN matrix (standard errors are NaN only then).
    """
    information = -0.5 * (hessian + hessian.T)
    values, vectors = np.linalg.eigh(information)
    bad = values <= _MAX_CONDITION**-1 * max(values[-1], 0.0)
    if values[-1] <= 0:
        bad[:] = True
    if bad.any():
        involved = np.abs(vectors[:, bad]).max(axis=1) > 0.3
        listed = ", ".join(n for n, flag in zip(names, involved, strict=True) if flag)
        kind = "is not negative definite" if values[0] <= 0 else "is nearly singular"
        warnings.warn(
            f"the Hessian of the log-likelihood {kind} (eigenvalues of the information "
            f"{values[0]:.3g} .. {values[-1]:.3g}); parameters involved: {listed}. "
            "Standard errors are NaN: the parameters may not be identified, or the fit "
            "may not be at a maximum.",
            HessianWarning,
            stacklevel=3,
        )
        return np.full_like(information, np.nan)
    return (vectors / values) @ vectors.T


def meat(scores: np.ndarray, clusters: np.ndarray | None = None) -> np.ndarray:
    """`J = sum_i s_i s_i'`, or over cluster sums with the `G/(G-1)` correction."""
    if clusters is None:
        return scores.T @ scores
    labels, inverse = np.unique(np.asarray(clusters), return_inverse=True)
    if labels.size < 2:
        raise ValueError("cluster-robust covariance needs at least two clusters.")
    sums = np.zeros((labels.size, scores.shape[1]))
    np.add.at(sums, inverse, scores)
    return labels.size / (labels.size - 1) * sums.T @ sums


def sandwich(bread: np.ndarray, filling: np.ndarray) -> np.ndarray:
    """`B J B` (symmetrised)."""
    out = bread @ filling @ bread
    return 0.5 * (out + out.T)
