"""From an estimate to uncertainty: covariance estimators (a registry), the delta
method, the results record and the estimated mixing distribution."""

from ._covariance import (
    AbstractCovariance as AbstractCovariance,
    Bootstrap as Bootstrap,
    Cluster as Cluster,
    CovarianceEstimate as CovarianceEstimate,
    CovarianceEvidence as CovarianceEvidence,
    Hessian as Hessian,
    Sandwich as Sandwich,
    cluster_sums as cluster_sums,
    covariance_estimator as covariance_estimator,
    covariance_types as covariance_types,
    inverse_information as inverse_information,
    register_covariance as register_covariance,
    sandwich as sandwich,
)
from ._delta import delta_method as delta_method
from ._mixing import MixingDistribution as MixingDistribution
from ._posterior import PosteriorSource as PosteriorSource
from ._results import Results as Results
