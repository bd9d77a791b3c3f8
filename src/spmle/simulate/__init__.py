"""Simulated problems with a known mixing distribution (demos, tests, benchmarks)."""

from ._normal_means import normal_means as normal_means
