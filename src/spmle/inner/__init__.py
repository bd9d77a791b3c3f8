"""The inner problem: certified mixture weights on a fixed grid (NPMLE)."""

from ._em import EM as EM
from ._mixsqp import MixSQP as MixSQP
from ._operator import (
    AbstractLikelihoodOperator as AbstractLikelihoodOperator,
    DenseLikelihood as DenseLikelihood,
)
from ._solve import NPMLESolution as NPMLESolution, npmle as npmle
from ._solver import AbstractNPMLESolver as AbstractNPMLESolver
