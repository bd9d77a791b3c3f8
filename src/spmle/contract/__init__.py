"""What a user writes and hands to spmle: the model contract, support grids,
groups, data conversion, and the checks and frame readers ready models use."""

from ._checks import (
    check_counts as check_counts,
    check_finite as check_finite,
    check_rows as check_rows,
    data_key as data_key,
)
from ._compress import compress_rows as compress_rows
from ._data import as_data as as_data, nobs as nobs, read_data as read_data
from ._frame import frame_columns as frame_columns, long_panel as long_panel
from ._grid import Grid as Grid, as_support as as_support
from ._groups import Groups as Groups
from ._model import (
    AbstractModel as AbstractModel,
    AbstractParametricModel as AbstractParametricModel,
)
