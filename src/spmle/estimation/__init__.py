"""Maximising over theta: the problem contract, the optimiser loop, the Newton
polish, bootstrap refits, `fit` (semiparametric) and `fit_mle` (parametric).

The public seam for jit- and vmap-able estimation (Monte Carlo studies, custom
drivers): build a problem, then `minimise` it and take `derivatives` at the
optimum. Example in `minimise`.
"""

from .._internal import flatten as flatten, split as _split
from ._bootstrap import bootstrap_refits as bootstrap_refits
from ._infer import Description as Description, infer as infer
from ._minimise import (
    GTOL as GTOL,
    Optimum as Optimum,
    default_optimizer as default_optimizer,
    derivatives as derivatives,
    minimise as minimise,
    scores as scores,
)
from ._optimise import Run as Run, optimise as optimise
from ._parametric import ParametricProblem as ParametricProblem, fit_mle as fit_mle
from ._problem import AbstractProblem as AbstractProblem
from ._semiparametric import ProfileProblem as ProfileProblem, fit as fit


def parameters(model):
    """The model's parameters: its floating array fields, as a pytree (the
    `params0` of `minimise`)."""
    return _split(model)[0]
