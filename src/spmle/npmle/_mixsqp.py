"""mixSQP (Kim, Carbonetto, Stephens & Anitescu 2020) in pure JAX.

Solves `min_{x >= 0} phi(x) = -sum_i w_i log (A x)_i + sum_k x_k`, whose minimiser
lies on the simplex, by sequential quadratic programming: an EM warm start, then
per step an active-set QP on the m weights with the curvature `A' diag(w/u^2) A`
and an Armijo backtracking line search. The gradient and the stopping certificate
always use the full matrix; only the curvature may be low rank.
"""

from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from ._active_set import solve_nonnegative_qp
from ._em import em_step
from ._kkt import kkt_residuals, likelihood_ratios
from ._operator import AbstractLikelihoodOperator, weighted_gram
from ._solver import AbstractNPMLESolver, SolverOutput


class _State(eqx.Module):
    x: Float[Array, " m"]
    d: Float[Array, " m"]
    u: Float[Array, " n"]
    y: Float[Array, " m"]
    steps: Int[Array, ""]
    qp_steps: Int[Array, ""]
    stagnated: Bool[Array, ""]


class MixSQP(AbstractNPMLESolver):
    """Sequential quadratic programming for the NPMLE (mixSQP).

    Fields (defaults follow R mixsqp where it has one):
        tol: KKT tolerance of the certificate (on `d_k - 1`).
        max_steps: maximum number of SQP steps.
        em_steps: EM steps of the warm start from the uniform distribution.
        armijo: sufficient-decrease constant of the line search.
        shrink: step-length reduction factor of the line search.
        min_step: smallest step length before the solver reports stagnation.
        qp_tol: multiplier tolerance of the active-set QP.
        max_qp_steps: maximum active-set steps per QP.
        curvature: `"exact"` uses `A' diag(w/u^2) A`; `"low_rank"` projects it on
            the leading `rank` eigenvectors of `A'A` (one Gram matrix up front, then
            O(n rank^2) per step); `"auto"` picks low rank when `m > rank`.
        rank: number of eigenvectors kept by the low-rank curvature.
        ridge: relative ridge (times the largest curvature diagonal) added to the
            QP's curvature; it damps the step, never moves the optimum.

    Example:
        >>> sol = spmle.npmle(log_lik, solver=spmle.MixSQP(tol=1e-10))
    """

    tol: float = 1e-8
    max_steps: int = 1000
    support_threshold: float = 0.0
    em_steps: int = 10
    armijo: float = 0.01
    shrink: float = 0.75
    min_step: float = 1e-8
    qp_tol: float = 1e-10
    max_qp_steps: int = 100
    curvature: Literal["auto", "exact", "low_rank"] = "auto"
    rank: int = 40
    ridge: float = 1e-10

    def __check_init__(self):
        if self.curvature not in ("auto", "exact", "low_rank"):
            raise ValueError(
                f"MixSQP(curvature={self.curvature!r}): use 'auto', 'exact' or "
                "'low_rank'."
            )
        if self.rank < 1:
            raise ValueError(f"MixSQP(rank={self.rank}): rank must be at least 1.")

    def _curvature(self, op: AbstractLikelihoodOperator):
        m = op.shape[1]
        low_rank = self.curvature == "low_rank" or (
            self.curvature == "auto" and m > self.rank
        )
        if not low_rank or self.rank >= m:
            return op.weighted_gram
        # A ~ U V' with V the leading eigenvectors of A'A and U = A V, so the
        # curvature costs O(n r^2) per step instead of O(n m^2).
        gram = op.weighted_gram(jnp.ones(op.shape[0]))
        _, vectors = jnp.linalg.eigh(gram)
        basis = vectors[:, -self.rank :]
        scores = op.mv(basis)
        return lambda dd: basis @ weighted_gram(scores, dd) @ basis.T

    def _line_search(self, w, u, x, d, direction, a_direction):
        slope = jnp.dot(1.0 - d, direction)
        ratio = a_direction / u
        total = jnp.sum(direction)

        def decrease(alpha):
            # phi(x + alpha p) - phi(x), accurate for small changes via log1p.
            arg = alpha * ratio
            safe = jnp.where(arg > -1.0, arg, 0.0)
            value = -jnp.dot(w, jnp.log1p(safe)) + alpha * total
            return jnp.where(jnp.all(arg > -1.0), value, jnp.inf)

        def insufficient(alpha):
            return decrease(alpha) > self.armijo * alpha * slope

        alpha = jax.lax.while_loop(
            lambda a: insufficient(a) & (a >= self.min_step),
            lambda a: a * self.shrink,
            jnp.array(1.0, dtype=u.dtype),
        )
        accepted = (slope < 0) & ~insufficient(alpha)
        return alpha, accepted

    def solve(self, op, w):
        m = op.shape[1]
        curvature = self._curvature(op)
        x0 = jax.lax.fori_loop(
            0, self.em_steps, lambda _, x: em_step(op, x, w), jnp.full(m, 1.0 / m)
        )
        d0, u0 = likelihood_ratios(op, x0, w)

        def cond(s: _State):
            on_grid, on_support = kkt_residuals(s.d, s.x, self.support_threshold)
            certified = (on_grid <= self.tol) & (on_support <= self.tol)
            return ~certified & ~s.stagnated & (s.steps < self.max_steps)

        def body(s: _State):
            hessian = curvature(w / s.u**2)
            # Regularise the step y - x, not the point: the QP's linear term is
            # g + 1 - (H + eps I) x with g = -d, so its fixed point is the exact
            # optimum whatever the (low-rank, ridged) curvature.
            ridge = self.ridge * jnp.max(jnp.diag(hessian))
            hessian = hessian + ridge * jnp.eye(m)
            y, qp_steps = solve_nonnegative_qp(
                hessian,
                1.0 - s.d - hessian @ s.x,
                s.y,
                tol=self.qp_tol,
                max_steps=self.max_qp_steps,
            )
            direction = y - s.x
            alpha, accepted = self._line_search(
                w, s.u, s.x, s.d, direction, op.mv(direction)
            )
            x = jnp.where(accepted, s.x + alpha * direction, s.x)
            # Rescaling to sum 1 never increases phi (phi(cx) is minimised at
            # c = 1/sum x), and keeps the iterate on the simplex.
            x = x / jnp.sum(x)
            d, u = likelihood_ratios(op, x, w)
            return _State(x, d, u, y, s.steps + 1, s.qp_steps + qp_steps, ~accepted)

        init = _State(
            x0, d0, u0, jnp.zeros(m), jnp.array(0), jnp.array(0), jnp.array(False)
        )
        final = jax.lax.while_loop(cond, body, init)
        return SolverOutput(final.x, final.steps, final.qp_steps, final.stagnated)
