"""Checks a ready model makes on its data before any JAX code runs.

A model's `validate(data)` names the key, the expected shape and the rows to fix;
without it, a negative count reads "-inf on the whole grid ... widen the grid",
which blames the grid for bad data.
"""

import numpy as np

from .._internal import describe_rows, is_concrete


def data_key(data, key: str, model: str, shape: str, ndim: int) -> np.ndarray | None:
    """`data[key]` as a host array of `ndim` dimensions (None when traced).

    Raises a `KeyError` naming the key and the expected shape when it is missing,
    and a `ValueError` on a wrong number of dimensions.
    """
    if key not in data:
        raise KeyError(
            f"{model} reads data[{key!r}] with shape {shape}; `data` has keys "
            f"{sorted(data)}."
        )
    value = data[key]
    if not is_concrete(value):
        return None
    value = np.asarray(value)
    if value.ndim != ndim:
        raise ValueError(
            f"{model}: data[{key!r}] must have shape {shape}; got {value.shape}."
        )
    return value


def check_rows(bad, key: str, model: str, what: str) -> None:
    """Raise a `ValueError` naming the rows where `bad` holds (any trailing axes
    are reduced): `"{model}: data[{key}] {what} in rows ..."`."""
    bad = np.asarray(bad)
    if bad.ndim > 1:
        bad = bad.reshape(bad.shape[0], -1).any(axis=1)
    if bad.any():
        raise ValueError(f"{model}: data[{key!r}] {what} in {describe_rows(bad)}.")


def check_finite(value, key: str, model: str) -> None:
    check_rows(~np.isfinite(value), key, model, "has NaN or infinite values")


def check_counts(value, key: str, model: str) -> None:
    """Nonnegative integers (stored as floats or ints)."""
    check_finite(value, key, model)
    check_rows(value < 0, key, model, "has negative values")
    check_rows(value != np.round(value), key, model, "has non-integer values")
