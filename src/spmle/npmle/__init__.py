"""The inner problem for one likelihood: certified mixture weights (the NPMLE).

What the profile layer may use: the entry point `npmle` and its record, the
operators, the solver strategies, and the seams below (a solve with exact
derivatives, a solve without, the KKT derivative rules on a grid and for free
atoms, the free-atom refinement and the eager checks).
"""

from ._atoms import AtomSolution as AtomSolution, refine_atoms as refine_atoms
from ._atoms_implicit import (
    atom_tangents as atom_tangents,
    atoms_at_optimum as atoms_at_optimum,
    mixture_loglik as mixture_loglik,
    mixture_rows as mixture_rows,
)
from ._certificate import (
    kkt_residuals as kkt_residuals,
    likelihood_ratios as likelihood_ratios,
)
from ._implicit import (
    at_optimum as at_optimum,
    optimum_tangents as optimum_tangents,
    weight_response as weight_response,
)
from ._npmle import npmle as npmle, solve as solve, solve_weights as solve_weights
from ._operator import (
    AbstractLikelihoodOperator as AbstractLikelihoodOperator,
    DenseLikelihood as DenseLikelihood,
    RowChunkedLikelihood as RowChunkedLikelihood,
    materialise as materialise,
    shifted_likelihood as shifted_likelihood,
    weighted_gram as weighted_gram,
)
from ._rows import RowwiseLogLik as RowwiseLogLik
from ._solution import RESULTS as RESULTS, NPMLESolution as NPMLESolution
from ._validate import (
    check_values_eagerly as check_values_eagerly,
    host_row_max as host_row_max,
    invalid_flag as invalid_flag,
)
from .solvers import (
    EM as EM,
    AbstractNPMLESolver as AbstractNPMLESolver,
    MixSQP as MixSQP,
)
