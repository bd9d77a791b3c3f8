"""What a user writes and hands to spmle: the model contract, support grids,
groups and data conversion."""

from ._data import as_data as as_data, nobs as nobs
from ._grid import Grid as Grid, as_support as as_support
from ._groups import Groups as Groups
from ._model import (
    AbstractModel as AbstractModel,
    AbstractParametricModel as AbstractParametricModel,
)
