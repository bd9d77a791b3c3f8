"""Ready models, one file each."""

from ._linear_factor import LinearFactor as LinearFactor
