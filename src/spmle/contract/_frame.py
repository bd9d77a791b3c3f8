"""pandas DataFrames at the API boundary: named columns to a model's data dict.

Every error names the argument, the column and the rows (by the frame's own row
labels), and says what to do: real frames carry ID strings, missing values and
panels in long format, and a failure deep inside JAX helps no one.
"""

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd


Columns = str | Sequence[str] | None


def _labels(frame: pd.DataFrame, mask, limit: int = 5) -> str:
    rows = frame.index[np.asarray(mask)]
    shown = ", ".join(repr(r) for r in rows[:limit])
    more = f" and {rows.size - limit} more" if rows.size > limit else ""
    return f"row{'s' if rows.size > 1 else ''} {shown}{more}"


def _require_frame(frame, argument: str) -> pd.DataFrame:
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"`{argument}` must be a pandas DataFrame; got {type(frame)}.")
    if frame.shape[0] == 0:
        raise ValueError(f"`{argument}` has no rows: there is nothing to fit.")
    return frame


def _column(frame: pd.DataFrame, name: str, argument: str) -> np.ndarray:
    """One column as float64, with errors for missing, non-numeric and NaN."""
    if name not in frame.columns:
        raise KeyError(
            f"`{argument}` has no column {name!r}; its columns are "
            f"{list(map(str, frame.columns))}. Pass the right name as a keyword."
        )
    series = frame[name]
    if series.dtype == bool:
        series = series.astype(np.float64)
    if not pd.api.types.is_numeric_dtype(series.dtype):
        numeric = pd.to_numeric(series, errors="coerce")
        bad = numeric.isna() & series.notna()
        raise TypeError(
            f"column {name!r} of `{argument}` is not numeric (dtype "
            f"{series.dtype}): {_labels(frame, bad)} hold values such as "
            f"{series[bad].iloc[0]!r}. Convert or drop them first."
        )
    values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    missing = ~np.isfinite(values)
    if missing.any():
        raise ValueError(
            f"column {name!r} of `{argument}` has NaN or infinite values in "
            f"{_labels(frame, missing)}. Drop these rows (e.g. `df.dropna()`) or "
            "fill them."
        )
    return values


def frame_columns(
    frame, columns: Mapping[str, Columns], *, argument: str = "frame"
) -> dict[str, np.ndarray]:
    """A data dict from named columns of a DataFrame.

    Args:
        frame: a pandas DataFrame, one row per observation.
        columns: data key -> a column name ((n,) float64), a list of names
            ((n, k) float64, k may be 0) or None (key left out).
        argument: the name used in error messages.

    Returns:
        dict of numpy float64 arrays; columns not named are ignored.

    Examples:
        >>> import pandas as pd
        >>> df = pd.DataFrame({"id": ["a", "b"], "y": [1, 2], "x": [0.5, 1.5]})
        >>> data = frame_columns(df, {"counts": "y", "covariates": ["x"]})
        >>> data["counts"], data["covariates"].shape
        (array([1., 2.]), (2, 1))
    """
    frame = _require_frame(frame, argument)
    data = {}
    for key, spec in columns.items():
        if spec is None:
            continue
        if isinstance(spec, str):
            data[key] = _column(frame, spec, argument)
        else:
            values = [_column(frame, name, argument) for name in spec]
            data[key] = (
                np.stack(values, axis=1) if values else np.zeros((frame.shape[0], 0))
            )
    return data


def long_panel(
    frame,
    unit: str,
    time: str,
    columns: Mapping[str, Columns],
    *,
    balanced: bool = False,
    argument: str = "frame",
) -> tuple[dict[str, np.ndarray], np.ndarray, pd.Index]:
    """Wide (n units, T periods) arrays from a panel in long format.

    Units are kept in order of first appearance, periods sorted. A unit observed
    in fewer than T periods has zeros in the missing cells and `False` in the mask.

    Args:
        frame: a DataFrame with one row per unit and period.
        unit, time: the columns identifying the unit and the period (any dtype).
        columns: data key -> a column name ((n, T)) or a list ((n, T, k)).
        balanced: raise, naming the units, when a unit misses a period.

    Returns:
        `(data, mask, units)`: the dict of float64 arrays, the (n, T) boolean mask
        of observed cells and the unit labels (n,).

    Examples:
        >>> import pandas as pd
        >>> df = pd.DataFrame({"firm": ["a", "a", "b"], "year": [1, 2, 2],
        ...                    "y": [1.0, 0.0, 1.0]})
        >>> data, mask, units = long_panel(df, "firm", "year", {"outcomes": "y"})
        >>> data["outcomes"].tolist(), mask.tolist(), list(units)
        ([[1.0, 0.0], [0.0, 1.0]], [[True, True], [False, True]], ['a', 'b'])
    """
    frame = _require_frame(frame, argument)
    for name in (unit, time):
        if name not in frame.columns:
            raise KeyError(
                f"`{argument}` has no column {name!r}; its columns are "
                f"{list(map(str, frame.columns))}."
            )
        if frame[name].isna().any():
            raise ValueError(
                f"column {name!r} of `{argument}` has missing ids in "
                f"{_labels(frame, frame[name].isna().to_numpy())}."
            )
    duplicated = frame.duplicated([unit, time], keep=False).to_numpy()
    if duplicated.any():
        raise ValueError(
            f"`{argument}` has more than one row per ({unit}, {time}) in "
            f"{_labels(frame, duplicated)}: a panel needs one row per unit and period."
        )
    flat = frame_columns(frame, columns, argument=argument)
    rows, units = pd.factorize(frame[unit], sort=False)
    periods = np.sort(frame[time].unique())
    cols = np.searchsorted(periods, frame[time].to_numpy())
    shape = (units.size, periods.size)
    mask = np.zeros(shape, dtype=bool)
    mask[rows, cols] = True
    if balanced and not mask.all():
        short = units[~mask.all(axis=1)]
        shown = ", ".join(repr(u) for u in short[:5])
        more = f" and {short.size - 5} more" if short.size > 5 else ""
        raise ValueError(
            f"`{argument}` is an unbalanced panel: units {shown}{more} miss some of "
            f"the {periods.size} periods of {time!r}. This model needs every unit in "
            "every period; drop the incomplete units."
        )
    data = {}
    for key, values in flat.items():
        wide = np.zeros(shape + values.shape[1:])
        wide[rows, cols] = values
        data[key] = wide
    return data, mask, pd.Index(units)
