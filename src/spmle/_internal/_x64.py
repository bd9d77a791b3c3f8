"""float64 policy: spmle never flips JAX's global configuration at import."""

import jax
import jax.numpy as jnp
import numpy as np


_X64_HINT = (
    "spmle computes in float64. Enable it once at the top of your program with "
    "`jax.config.update('jax_enable_x64', True)`, or locally with "
    "`with jax.enable_x64(True): ...`."
)


def require_x64() -> None:
    """Raise a clear error when JAX's 64-bit mode is off."""
    if not jax.config.jax_enable_x64:
        raise RuntimeError("JAX 64-bit mode is disabled. " + _X64_HINT)


def as_float64(x, name: str) -> jax.Array:
    """Convert `x` to a float64 JAX array; float32 (or lower) input is an error."""
    require_x64()
    dtype = getattr(x, "dtype", None)
    if dtype is not None and jnp.issubdtype(dtype, jnp.floating):
        if jnp.finfo(dtype).bits < 64:
            raise TypeError(
                f"`{name}` has dtype {dtype}; spmle needs float64. Pass "
                f"`{name}.astype('float64')` (computing in float32 loses the "
                "precision the KKT certificate needs)."
            )
    elif dtype is not None and not (
        jnp.issubdtype(dtype, jnp.integer) or jnp.issubdtype(dtype, jnp.bool_)
    ):
        raise TypeError(f"`{name}` has dtype {dtype}; expected a real float64 array.")
    return jnp.asarray(x, dtype=jnp.float64)


def is_concrete(*xs) -> bool:
    """True when no array is traced, so values can be checked eagerly."""
    return all(not isinstance(x, jax.core.Tracer) for x in xs)


def as_weights(weights, n: int, against: str) -> jax.Array:
    """(n,) float64 observation weights; all ones when `weights` is None."""
    if weights is None:
        return jnp.asarray(np.ones(n))  # from the host: no compiled fill
    weights = as_float64(weights, "weights")
    if weights.shape != (n,):
        raise ValueError(
            f"`weights` must have shape (n,) = ({n},) to match `{against}`; got "
            f"{weights.shape}."
        )
    return weights
