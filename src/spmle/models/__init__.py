"""Ready models, one file each."""

from ._binomial import BinomialMixture as BinomialMixture
from ._linear_factor import LinearFactor as LinearFactor
from ._normal_means import NormalMeans as NormalMeans
from ._panel_logit import PanelLogit as PanelLogit
from ._poisson import PoissonMixture as PoissonMixture
from ._random_slope import RandomSlopes as RandomSlopes
from ._weibull_hazard import WeibullHazard as WeibullHazard
