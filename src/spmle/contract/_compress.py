"""Identical observations collapse into one row with their summed weight.

The weighted log-likelihood `sum_i w_i l(w_i; theta, F)` is the same either way,
so the estimate, the profile Hessian, F and the posteriors are the same; counts
data shrink most (a million Poisson counts hold a few hundred distinct rows).
"""

import jax
import numpy as np
import pandas as pd


# Compressing pays only when it removes rows: below a 10% cut, the fit keeps the
# rows as they are (no reordering, no inverse index).
MIN_CUT = 0.1


def _row_codes(columns: list[np.ndarray], most: int) -> np.ndarray | None:
    """(n,) integer codes, equal exactly where every column is equal; None
    when there are more than `most` distinct rows."""
    hashes = np.zeros(columns[0].shape[0], dtype=np.uint64)
    for column in columns:
        # Hash the bytes (so -0.0 and 0.0, or two NaN payloads, stay apart).
        bits = np.ascontiguousarray(column).view(np.uint64)
        hashes = hashes * np.uint64(1_000_003) ^ pd.util.hash_array(bits)
    codes, uniques = pd.factorize(hashes)
    if uniques.size > most:
        # Collisions only merge rows: at least this many are distinct. (Saves
        # the exact check's sort: 0.1 s of a 1e6-row normal-means fit.)
        return None
    first = np.unique(codes, return_index=True)[1]
    representative = first[codes]
    if all(np.array_equal(c, c[representative]) for c in columns):
        return codes
    # A hash collision (about n^2 / 2^64): fall back to an exact sort.
    stacked = np.ascontiguousarray(np.stack(columns, axis=1))
    rows = stacked.view(np.dtype((np.void, stacked.dtype.itemsize * len(columns))))
    return np.unique(rows.ravel(), return_inverse=True)[1].ravel()


def compress_rows(data: dict, weights, labels=None):
    """`(data, weights, labels, inverse)` with one row per distinct observation
    (in order of first appearance), or None when fewer than 10% of the rows go.

    Args:
        data: dict of host arrays with leading axis n.
        weights: (n,) observation weights: identical rows add theirs up.
        labels: optional (n,) group labels: rows of different groups stay apart.

    Returns:
        The compressed data, (u,) weights, (u,) labels (or None) and the (n,)
        index of each input row's compressed row.

    Examples:
        >>> import numpy as np
        >>> data = {"counts": np.array([0.0, 2.0, 0.0, 2.0, 5.0])}
        >>> out = compress_rows(data, np.ones(5))
        >>> out[0]["counts"], out[1], out[3]
        (array([0., 2., 5.]), array([2., 2., 1.]), array([0, 1, 0, 1, 2]))
    """
    leaves = jax.tree.leaves(data)
    n = leaves[0].shape[0]
    columns = [
        np.asarray(leaf, dtype=np.float64).reshape(n, -1)[:, j]
        for leaf in leaves
        for j in range(int(np.prod(np.shape(leaf)[1:], dtype=int)))
    ]
    if labels is not None:
        columns.append(np.asarray(labels, dtype=np.float64))
    codes = _row_codes(columns, most=int((1 - MIN_CUT) * n))
    if codes is None:
        return None
    size = int(codes.max()) + 1
    if size > (1 - MIN_CUT) * n:
        return None
    first = np.unique(codes, return_index=True)[1]  # codes follow first appearance
    compressed = jax.tree.map(lambda x: np.asarray(x)[first], data)
    summed = np.bincount(codes, weights=np.asarray(weights, np.float64), minlength=size)
    out_labels = None if labels is None else np.asarray(labels)[first]
    return compressed, summed, out_labels, codes
