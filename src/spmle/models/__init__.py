"""Ready models."""

from .linear_factor import LinearFactor as LinearFactor
