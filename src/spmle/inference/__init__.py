"""Covariance estimators and their diagnostics."""

from ._covariance import (
    inverse_information as inverse_information,
    meat as meat,
    sandwich as sandwich,
)
