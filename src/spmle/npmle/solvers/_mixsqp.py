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

from .._certificate import kkt_residuals
from .._operator import AbstractLikelihoodOperator, weighted_gram
from ._active_set import solve_nonnegative_qp
from ._base import AbstractNPMLESolver, starting_point
from ._em import em_step


# The row stride of the presolve (see `MixSQP.presolve_rows`).
PRESOLVE_STRIDE = 8


class _State(eqx.Module):
    x: Float[Array, " m"]
    d: Float[Array, " m"]
    u: Float[Array, " n"]
    y: Float[Array, " m"]
    # The working set of the next step and its curvature, computed in the same
    # pass over the matrix as `d` (empty without a working set).
    points: Int[Array, " s"]
    gram: Float[Array, "s s"]
    live: Int[Array, ""]  # the working set's first `live` slots are used
    steps: Int[Array, ""]
    qp_steps: Int[Array, ""]
    exact: Bool[Array, ""]
    rejected: Bool[Array, ""]
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
            O(n rank^2) per step); `"auto"` uses low rank when `m > 2 rank` and the
            eigenvalues of `A'A` beyond the first `rank` are below `rank_tol`
            times the largest. A step the low-rank curvature cannot make is
            retried with the exact one, which is kept from then on.
        working_set: with `curvature="auto"` on grids of more than twice this
            many points, a step whose iterate has at most 3/4 of it in positive
            weights solves its QP on a working set of this many points: every
            point with positive weight and the largest gradient ratios `d_k`
            (the points that could enter). The other weights stay zero for
            that step, so the QP is the exact one on that face, with an
            O(n s^2) curvature instead of O(n m^2); the certificate over all m
            points decides when to stop, as always.
        presolve_rows: with a working set, a cold start on at least 8 times
            this many rows first solves the NPMLE of every 8th row and starts
            from its solution (its few atoms keep the steps on the working set).
        rank: number of eigenvectors kept by the low-rank curvature.
        rank_tol: relative eigenvalue threshold of the `"auto"` rank test.
        ridge: relative ridge (times the largest curvature diagonal) added to the
            QP's curvature; it damps the step, never moves the optimum.
        single_precision_curvature: accumulate the exact per-step curvature in
            float32 (2-3x faster). Only the search path changes: the gradient, the
            line search and the certificate stay float64, so the answer does not.

    Examples:
        >>> import jax, jax.numpy as jnp, spmle
        >>> jax.config.update("jax_enable_x64", True)
        >>> _, _, log_lik = spmle.simulate.normal_means(
        ...     jax.random.key(0), 500, jnp.linspace(-4, 4, 20))
        >>> sol = spmle.npmle(log_lik, solver=spmle.MixSQP(tol=1e-10))
        >>> bool(sol.kkt_violation <= 1e-10)
        True
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
    working_set: int = 64
    presolve_rows: int = 20_000
    rank: int = 40
    rank_tol: float = 1e-12
    ridge: float = 1e-10
    single_precision_curvature: bool = True

    def __check_init__(self):
        if self.curvature not in ("auto", "exact", "low_rank"):
            raise ValueError(
                f"MixSQP(curvature={self.curvature!r}): use 'auto', 'exact' or "
                "'low_rank'."
            )
        if self.rank < 1:
            raise ValueError(f"MixSQP(rank={self.rank}): rank must be at least 1.")

    def _low_rank_factor(self, op: AbstractLikelihoodOperator):
        """`(V, A V, fits)` for the curvature `V (U' D U) V'`, or None for exact."""
        m = op.shape[1]
        wanted = self.curvature == "low_rank" or (
            # Below 2 rank points the set-up (a Gram matrix and its eigenvectors)
            # costs more than the exact curvature of the few SQP steps it saves.
            self.curvature == "auto" and m > 2 * self.rank
        )
        if not wanted or self.rank >= m:
            return None
        # A ~ U V' with V the leading eigenvectors of A'A and U = A V: one Gram
        # matrix up front, then O(n r^2) per step instead of O(n m^2).
        values, vectors = jnp.linalg.eigh(op.weighted_gram(None))
        basis = vectors[:, -self.rank :]
        if self.curvature == "low_rank":
            fits = jnp.array(True)
        else:
            fits = values[-self.rank - 1] <= self.rank_tol * values[-1]
        return basis, op.mv(basis), fits

    def _line_search(self, x, w, u, d, direction, a_direction):
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
        armijo_holds = (slope < 0) & ~insufficient(alpha)
        # A full step that changes phi by less than the rounding error of phi
        # itself (e.g. dropping a weight of 1e-75) cannot be judged by Armijo:
        # take it, so that such weights become exact zeros.
        rounding = 64 * jnp.finfo(u.dtype).eps * (1.0 + jnp.abs(jnp.dot(w, jnp.log(u))))
        negligible = ~armijo_holds & (decrease(1.0) <= rounding)
        alpha = jnp.where(negligible, 1.0, alpha)
        # Past a full step, double while phi keeps falling and x stays >= 0: one
        # pass over n values each (A p is known). A weight that has to grow from
        # next to nothing (an atom for a few outlying rows) gets a Newton step of
        # about its current size, since -log u is far from quadratic there: at
        # n = 1e6 such an atom took 11 SQP steps, each halving max d - 1.
        shrinking = direction < 0
        room = jnp.min(
            jnp.where(shrinking, x / jnp.where(shrinking, -direction, 1.0), jnp.inf)
        )

        def longer(a):
            return (2 * a <= room) & (a < 2.0**20) & (decrease(2 * a) < decrease(a))

        alpha = jax.lax.cond(
            armijo_holds & (alpha == 1.0),
            lambda a: jax.lax.while_loop(longer, lambda a: 2 * a, a),
            lambda a: a,
            alpha,
        )
        return alpha, armijo_holds | negligible

    def solve(self, op, weights, init=None):
        w = weights / jnp.sum(weights)
        m = op.shape[1]
        # At n = 1e6 and m = 300 a full float32 curvature took 1.3 s a step and
        # the low-rank factor a float64 Gram matrix up front; a 64-point working
        # set's curvature costs 22 times less (the NPMLE has tens of atoms).
        working = self.curvature == "auto" and 0 < self.working_set < m // 2
        factor = None if working else self._low_rank_factor(op)

        single = self.single_precision_curvature

        def curvature(exact, dd):
            if factor is None:
                return op.weighted_gram(dd, single_precision=single)
            basis, scores, _ = factor
            return jax.lax.cond(
                exact,
                lambda dd: op.weighted_gram(dd, single_precision=single),
                # The projected curvature stays float64: its signed factors lose
                # more in float32 than the faster product saves in SQP steps.
                lambda dd: basis @ weighted_gram(scores, dd) @ basis.T,
                dd,
            )

        def em(x):  # the cold start: a few EM steps from the uniform distribution
            step = lambda _, x: em_step(op, x, w)  # noqa: E731
            return jax.lax.fori_loop(0, self.em_steps, step, x)

        n = op.shape[0]
        if init is None and working and n >= PRESOLVE_STRIDE * self.presolve_rows:
            # A cold start on many rows: first the NPMLE of every 8th row (itself
            # a solve, recursively), whose few atoms start the full one. At
            # n = 1e6, m = 300 the full solve then took 4 to 6 SQP steps instead of 8.
            index = jnp.arange(0, n, PRESOLVE_STRIDE)
            init = self.solve(op.take_rows(index), weights[index]).probs

        if init is None and working:
            # On a large grid, the uniform distribution on a few evenly spread
            # points, taken as a sparse warm start (the 1% uniform mix where it
            # leaves a row unexplained), so that every step can be a
            # working-set step: at n = 1e6, m = 300 the dense start's EM steps
            # and its first step, on the full curvature, took 4 s of 7. EM steps
            # from it gained nothing: on the (125,000, 300) presolve of the EB
            # benchmark, 0 and 2 of them took 0.37 and 0.38 s, 10 took 0.60 s.
            index = jnp.round(jnp.linspace(0, m - 1, self.working_set // 2))
            init = jnp.zeros(m, w.dtype).at[index.astype(int)].set(1.0)

        # A warm start's zeros keep its steps on the working set.
        init, d0, u0 = starting_point(op, w, init, em, sparse=working)
        size = self.working_set if working else 0

        def next_points(x, d):
            # Every positive weight first (they fit: see `use_working`), then
            # the largest d_k, the points that could enter.
            return jax.lax.top_k(jnp.where(x > 0, jnp.inf, d), size)[1]

        def use_working(x):
            return jnp.sum(x > 0) <= (3 * self.working_set) // 4

        half = size // 2

        def live_slots(x):
            # With few positive weights only the first half of the working set
            # is used: its curvature costs a quarter of the flops and half the
            # column reads (at n = 1e6, 0.1 s of a 0.45 s step).
            return jnp.where(jnp.sum(x > 0) <= (3 * half) // 4, half, size)

        def curvature_on(live, points, pass_fn):
            """`(d, gram) = pass_fn(columns)` on the live slots, the Gram matrix
            in a (size, size) one whose dead slots have a positive diagonal
            (`working_qp` keeps them at zero)."""

            def small():
                d, gram = pass_fn(points[:half])
                filler = jnp.full(size, jnp.max(jnp.diag(gram)))
                return d, jnp.diag(filler).at[:half, :half].set(gram)

            return jax.lax.cond(live == half, small, lambda: pass_fn(points))

        def cond(s: _State):
            on_grid, on_support = kkt_residuals(s.d, s.x, self.support_threshold)
            certified = (on_grid <= self.tol) & (on_support <= self.tol)
            # A state that is not finite (invalid input) ends the loop at once.
            finite = jnp.all(jnp.isfinite(s.d))
            running = ~certified & ~s.stagnated & (s.steps < self.max_steps)
            return running & finite

        def regularised(hessian, exact):
            diagonal = jnp.diag(hessian)
            ridge = self.ridge * jnp.max(diagonal)
            if single:
                ridge = ridge + jnp.where(exact, 1e-6, 0.0) * diagonal
            hessian = hessian + jnp.diag(jnp.broadcast_to(ridge, diagonal.shape))
            return (hessian + hessian.T) / 2

        def full_qp(s: _State):
            hessian = curvature(s.exact, w / s.u**2)
            # Regularise the step y - x, not the point: the QP's linear term is
            # g + 1 - (H + R) x with g = -d, so its fixed point is the exact
            # optimum whatever the (low-rank, ridged, rounded) curvature. A float32
            # curvature is accurate to ~1e-7 relative to its diagonal: a ridge of
            # 1e-6 diag(H) keeps its Cholesky factorisation defined.
            # Exactly symmetric: the QP's Cholesky reads one triangle, its linear
            # term the whole matrix, and the fixed point is exact only if the two
            # agree. A float32 Gram product is not symmetric to the last bit (on
            # jaxlib 0.9-0.10 by 1e-7; a stall at KKT 1.3e-8 on a 200 x 9 problem).
            hessian = regularised(hessian, s.exact)
            return solve_nonnegative_qp(
                hessian,
                1.0 - s.d - hessian @ s.x,
                s.y,
                tol=self.qp_tol,
                max_steps=self.max_qp_steps,
            )

        def working_qp(s: _State):
            # Outside the working set the weights are zero and stay zero, so the
            # QP restricted to it is the full QP on that face, with the same
            # linear term as `full_qp`'s there.
            points = s.points
            hessian = regularised(s.gram, s.exact)
            x = s.x[points]
            # Dead slots (zero weight, see `live_slots`) get a positive linear
            # term on their own diagonal: the QP keeps them at zero.
            dead = jnp.arange(size) >= s.live
            y, qp_steps = solve_nonnegative_qp(
                hessian,
                jnp.where(dead, 1.0, 1.0 - s.d[points] - hessian @ x),
                jnp.where(dead, 0.0, s.y[points]),
                tol=self.qp_tol,
                max_steps=self.max_qp_steps,
            )
            return jnp.zeros_like(s.y).at[points].set(y), qp_steps

        def body(s: _State):
            if working:
                y, qp_steps = jax.lax.cond(use_working(s.x), working_qp, full_qp, s)
            else:
                y, qp_steps = full_qp(s)
            direction = y - s.x
            a_direction = op.mv(direction)
            alpha, accepted = self._line_search(
                s.x, w, s.u, s.d, direction, a_direction
            )
            # A rejected step is replaced by an EM step (x d sums to one and never
            # lowers the likelihood) and the curvature becomes exact; two rejected
            # exact steps in a row are stagnation.
            fallback = jnp.where(s.exact, s.x * s.d, s.x)
            x = jnp.where(accepted, s.x + alpha * direction, fallback)
            # Rescaling to sum 1 never increases phi (phi(cx) is minimised at
            # c = 1/sum x), and keeps the iterate on the simplex.
            total = jnp.sum(x)
            x = x / total
            # After an accepted step A x is known without another pass over A.
            u = jax.lax.cond(
                accepted,
                lambda: (s.u + alpha * a_direction) / total,
                lambda: op.mv(x),
            )
            if working:
                # The next working set from this step's d (the new d is what
                # this pass computes): its positive weights are exact, its
                # candidates a step old, and the certificate reads the new d.
                points, live = next_points(x, s.d), live_slots(x)

                d, gram = jax.lax.cond(
                    use_working(x),
                    lambda: curvature_on(
                        live,
                        points,
                        lambda columns: op.rmv_and_gram(
                            w / u, w / u**2, columns, single_precision=single
                        ),
                    ),
                    lambda: (op.rmv(w / u), jnp.zeros((size, size), u.dtype)),
                )
            else:
                points, gram, d, live = s.points, s.gram, op.rmv(w / u), s.live
            rejected_exact = ~accepted & s.exact
            return _State(
                x=x,
                d=d,
                u=u,
                y=jnp.where(accepted, y, jnp.zeros_like(y)),
                points=points,
                gram=gram,
                live=live,
                steps=s.steps + 1,
                qp_steps=s.qp_steps + qp_steps,
                exact=s.exact | ~accepted,
                rejected=rejected_exact,
                stagnated=rejected_exact & s.rejected,
            )

        points, live = next_points(init, d0), live_slots(init)
        if working:
            _, gram = jax.lax.cond(
                use_working(init),
                lambda: curvature_on(
                    live,
                    points,
                    lambda columns: (
                        d0,
                        op.weighted_gram(
                            w / u0**2, single_precision=single, columns=columns
                        ),
                    ),
                ),
                lambda: (d0, jnp.zeros((size, size), u0.dtype)),
            )
        else:
            gram = jnp.zeros((0, 0), u0.dtype)
        init = _State(
            x=init,
            d=d0,
            u=u0,
            y=jnp.zeros(m),
            points=points,
            gram=gram,
            live=live,
            steps=jnp.array(0),
            qp_steps=jnp.array(0),
            exact=jnp.array(True) if factor is None else ~factor[2],
            rejected=jnp.array(False),
            stagnated=jnp.array(False),
        )
        final = jax.lax.while_loop(cond, body, init)
        return self.finish(
            op, weights, final.x, final.steps, final.qp_steps, final.stagnated
        )
