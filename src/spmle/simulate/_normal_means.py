"""Normal means with a discrete mixing distribution."""

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray


def normal_means(
    key: PRNGKeyArray,
    n: int,
    grid: Float[Array, " m"],
    *,
    atoms: Float[Array, " k"] = (-2.0, 0.0, 1.5),
    probs: Float[Array, " k"] = (0.3, 0.5, 0.2),
    noise: float = 1.0,
) -> tuple[Float[Array, " n"], Float[Array, " n"], Float[Array, "n m"]]:
    """Draw `theta_i ~ sum_j probs_j delta(atoms_j)` and `x_i ~ N(theta_i, noise^2)`.

    Returns `(theta, x, log_lik)` with `log_lik[i, k] = log N(x_i; grid_k, noise^2)`,
    the (n, m) input of `spmle.npmle`.

    Examples:
        >>> import jax, jax.numpy as jnp, spmle
        >>> jax.config.update("jax_enable_x64", True)
        >>> grid = jnp.linspace(-4, 4, 50)
        >>> key = jax.random.key(0)
        >>> theta, x, log_lik = spmle.simulate.normal_means(key, 1000, grid)
        >>> log_lik.shape
        (1000, 50)
    """
    atoms = jnp.asarray(atoms, dtype=float)
    probs = jnp.asarray(probs, dtype=float)
    grid = jnp.asarray(grid, dtype=float)
    key_theta, key_noise = jax.random.split(key)
    theta = jax.random.choice(key_theta, atoms, shape=(n,), p=probs)
    x = theta + noise * jax.random.normal(key_noise, (n,), dtype=grid.dtype)
    log_lik = jax.scipy.stats.norm.logpdf(x[:, None], grid[None, :], noise)
    return theta, x, log_lik
