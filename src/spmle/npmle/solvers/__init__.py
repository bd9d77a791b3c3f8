"""Strategies for the inner problem: the base class and one file per solver."""

from ._base import AbstractNPMLESolver as AbstractNPMLESolver
from ._em import EM as EM
from ._mixsqp import MixSQP as MixSQP
