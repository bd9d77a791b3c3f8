"""Covariates `x_i'beta` shared by the count models: effects, checks, frames."""

from collections.abc import Sequence

import jax.numpy as jnp

from ..contract import check_finite, data_key


def covariate_effect(beta, data, n: int):
    """`x_i'beta` (n,), or zeros when the model has no `beta`."""
    if beta is None:
        return jnp.zeros(n)
    return data["covariates"] @ beta


def check_covariates(beta, data, name: str, n: int) -> None:
    """`data["covariates"]` (n, k) finite, with k the length of `beta`.

    Covariates without `beta` would be silently ignored, so they are an error
    unless they have no columns.
    """
    k = 0 if beta is None else beta.shape[0]
    if beta is None and "covariates" not in data:
        return
    x = data_key(data, "covariates", name, f"(n, {k})", 2)
    if x is None:
        return
    if x.shape[0] != n:
        raise ValueError(
            f"{name}: data['covariates'] must have shape (n, {k}) with n = {n} rows; "
            f"got {x.shape}."
        )
    if x.shape[1] != k:
        fix = (
            f"pass `beta=jnp.zeros({x.shape[1]})` to estimate their effects"
            if beta is None
            else f"the model's `beta` has {k} entries"
        )
        raise ValueError(
            f"{name}: data['covariates'] has {x.shape[1]} columns but the model "
            f"expects {k}: {fix}."
        )
    check_finite(x, "covariates", name)


def check_same_rows(value, key: str, reference: str, shape, name: str) -> None:
    if value.shape != shape:
        raise ValueError(
            f"{name}: data[{key!r}] must have the shape of data[{reference!r}], "
            f"{shape}; got {value.shape}."
        )


def frame_covariates(covariates: str | Sequence[str]) -> list[str] | None:
    """Column names for `frame_columns`; None (key left out) when there are none."""
    names = [covariates] if isinstance(covariates, str) else list(covariates)
    return names or None


def simulation_effect(beta, covariates, latent, name: str):
    """`x_i'beta + v_i` for `simulate`, with an error naming the missing input."""
    if beta is None:
        if covariates is not None:
            raise ValueError(
                f"{name}.simulate: `covariates` given but the model has no `beta`."
            )
        return latent, {}
    if covariates is None:
        raise ValueError(
            f"{name}.simulate: the model has `beta` ({beta.shape[0]},): pass "
            f"`covariates` of shape (n, {beta.shape[0]})."
        )
    covariates = jnp.asarray(covariates, latent.dtype)
    return latent + covariates @ beta, {"covariates": covariates}
