"""The profile log-likelihood `L*(theta)`: its value with one F per group, the
optimiser's one-array objective, and value, gradient and Hessian in row chunks.

What the estimation layer may use is listed here.
"""

from ._atoms import (
    FreeAtomsInfo as FreeAtomsInfo,
    FreeAtomsStart as FreeAtomsStart,
    contributions_at_atoms as contributions_at_atoms,
    loglik_at_atoms as loglik_at_atoms,
)
from ._derivatives import (
    ProfileDerivatives as ProfileDerivatives,
    derivatives_at as derivatives_at,
    profile_derivatives as profile_derivatives,
)
from ._groups import (
    group_labels as group_labels,
    groups_at_optimum as groups_at_optimum,
    solve_groups as solve_groups,
)
from ._info import ProfileInfo as ProfileInfo
from ._loglik import (
    likelihood as likelihood,
    operator_loglik as operator_loglik,
    prepare_inputs as prepare_inputs,
    profile_loglik as profile_loglik,
)
from ._objective import profile_objective as profile_objective
