"""Bootstrap refits: many weighted refits in one compiled program."""

import jax
import jax.numpy as jnp
import optimistix as optx
from jaxtyping import Array, Bool, Float

from .._internal import compiled, flatten
from ._minimise import GTOL, _minimise
from ._problem import AbstractProblem
from ._progress import refit_done


@compiled
def bootstrap_refits(
    problem: AbstractProblem,
    params,
    init,
    optimizer: optx.AbstractMinimiser,
    max_steps,
    multipliers: Float[Array, "B n"],
    batch_size: int,
) -> tuple[Float[Array, "B k"], Bool[Array, " B"]]:
    """Refits under the observation weights `weights * multipliers[b]`, each
    started at `params` with the inner warm start `init`: the flat estimates
    (B, k) and whether each refit converged. Batches of `batch_size` refits are
    vmapped, in sequence inside one compiled program."""

    def one(multiplier):
        out = _minimise(
            problem.with_weights(problem.weights * multiplier),
            params,
            optimizer,
            max_steps,
            init,
            jnp.asarray(GTOL),
        )
        converged = out.result == optx.RESULTS.successful
        jax.debug.callback(refit_done, converged)
        return flatten(out.params)[0], converged

    return jax.lax.map(one, multipliers, batch_size=batch_size)
