"""Primal active-set method for the mixSQP subproblem.

    minimise 1/2 y'Hy + b'y  subject to  y >= 0,

with H (m, m) symmetric positive definite (the caller adds any ridge). m is small
(tens to a few hundred), so each step solves the equality-constrained problem on
the free set with a dense Cholesky factorisation of the masked matrix. Shapes stay
fixed (the free set is a boolean mask), so the method runs under `jit` and `vmap`.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
from jaxtyping import Array, Bool, Float, Int


class _QPState(eqx.Module):
    y: Float[Array, " m"]
    free: Bool[Array, " m"]
    steps: Int[Array, ""]
    done: Bool[Array, ""]


def _free_set_minimiser(H, b, free):
    both = free[:, None] & free[None, :]
    masked = jnp.where(both, H, 0.0) + jnp.diag(jnp.where(free, 0.0, 1.0))
    factor = jsl.cho_factor(masked, lower=True)
    return jnp.where(free, jsl.cho_solve(factor, jnp.where(free, -b, 0.0)), 0.0)


def solve_nonnegative_qp(
    H: Float[Array, "m m"],
    b: Float[Array, " m"],
    y0: Float[Array, " m"],
    *,
    tol: float,
    max_steps: int,
) -> tuple[Float[Array, " m"], Int[Array, ""]]:
    """Solve `min 1/2 y'Hy + b'y, y >= 0` from the feasible start `y0 >= 0`.

    The initial working set frees the coordinates where `y0 > 0`. Each step either
    moves to the minimiser on the free set (then frees the coordinate with the most
    negative multiplier, or stops when all multipliers are >= -tol) or, when that
    minimiser leaves the orthant, moves to the first blocking bound and fixes it.

    Returns the solution and the number of steps taken.
    """

    def cond(state):
        return ~state.done & (state.steps < max_steps)

    def body(state):
        z = _free_set_minimiser(H, b, state.free)
        blocked = state.free & (z < 0)
        feasible = ~jnp.any(blocked)

        # Feasible: accept z, then test the multipliers of the fixed coordinates.
        multipliers = jnp.where(state.free, jnp.inf, H @ z + b)
        entering = jnp.argmin(multipliers)
        optimal = multipliers[entering] >= -tol
        free_if_feasible = jnp.where(
            optimal, state.free, state.free.at[entering].set(True)
        )

        # Infeasible: step towards z until the first free coordinate hits zero.
        ratios = jnp.where(blocked, state.y / (state.y - z), jnp.inf)
        leaving = jnp.argmin(ratios)
        alpha = jnp.clip(ratios[leaving], 0.0, 1.0)
        y_step = jnp.maximum(state.y + alpha * (z - state.y), 0.0).at[leaving].set(0.0)
        free_if_blocked = state.free & (y_step > 0)

        y = jnp.where(feasible, z, y_step)
        free = jnp.where(feasible, free_if_feasible, free_if_blocked)
        return _QPState(y, free, state.steps + 1, feasible & optimal)

    init = _QPState(y0, y0 > 0, jnp.array(0), jnp.array(False))
    final = jax.lax.while_loop(cond, body, init)
    return final.y, final.steps
