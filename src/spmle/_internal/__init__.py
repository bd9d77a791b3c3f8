"""Helpers shared by every layer; imports nothing else from spmle.

The float64 policy, the compile helper, row chunks, flat parameters with readable
names, row lists for error messages and the warning classes. Other packages import
these names from here, never from the private modules.
"""

from ._chunks import (
    CHUNK_ENTRIES as CHUNK_ENTRIES,
    chunk_size as chunk_size,
    map_chunks as map_chunks,
    row_chunks as row_chunks,
    split_rows as split_rows,
    sum_chunks as sum_chunks,
)
from ._compile import compiled as compiled
from ._params import (
    ModelLogLik as ModelLogLik,
    Unflatten as Unflatten,
    check_parameters as check_parameters,
    flatten as flatten,
    names as names,
    split as split,
)
from ._rows import describe_rows as describe_rows
from ._warnings import (
    ConvergenceWarning as ConvergenceWarning,
    GridWarning as GridWarning,
    HessianWarning as HessianWarning,
)
from ._x64 import (
    as_float64 as as_float64,
    as_weights as as_weights,
    is_concrete as is_concrete,
    require_x64 as require_x64,
)
