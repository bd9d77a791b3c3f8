"""Row lists for error messages: users need to know which rows to fix."""

import numpy as np


def describe_rows(mask, limit: int = 5) -> str:
    """`"row 3"` or `"rows 3, 8, 12 and 40 more"` for a boolean mask over rows."""
    rows = np.flatnonzero(np.asarray(mask))
    shown = ", ".join(str(r) for r in rows[:limit])
    more = f" and {rows.size - limit} more" if rows.size > limit else ""
    return f"row{'s' if rows.size > 1 else ''} {shown}{more}"
