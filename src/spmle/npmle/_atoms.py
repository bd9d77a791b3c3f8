"""Free-atom NPMLE at fixed parameters.

On a fixed grid the NPMLE pins its atoms to grid points. `refine_atoms` starts
from a certified grid solution and lets the atoms move (FREE_ATOMS.md, section 1):

1. each run of consecutive grid points with weight above a threshold becomes one
   atom (split at interior valleys of the weights);
2. joint Newton on the locations `u` and weights `q` over the simplex, with the
   eigenvalues of the reduced Hessian flipped or clipped, a trust radius, a
   fraction-to-boundary rule on `q`, Armijo backtracking and an EM fallback;
   vanishing weights are dropped and atoms that meet are merged;
3. once Newton is stationary, the gradient function `D` is maximised over the
   continuum (`_continuum`); every local maximum with `D > 1 + tol` joins the
   atoms at weight 0, the weights of the enlarged set are re-solved by mixSQP,
   and Newton resumes.

Newton stops once stationary, or within the certificate's tolerance with a
predicted gain below it (near a close pair the likelihood is flat to third
order), and a valley move walks such a pair along its flat family. For a latent
in d >= 2 dimensions the same loop runs on (K, d) atoms; what depends on d
(clusters, the d x d Newton blocks, distances, the certificate over a box)
lives in `_atoms_nd` and `_continuum_nd`.

All loops are capped `lax.while_loop`s over `max_atoms` static slots, so the
whole refinement runs under `jit` (and `vmap`).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from .._internal import as_float64, as_weights, compiled
from ._atoms_nd import (
    closest_pair,
    clusters_nd,
    mixture_derivatives_nd,
    nearest_distance,
)
from ._continuum import (
    _RESOLUTION,
    LogLikFn,
    column_derivatives,
    gradient_function,
    maximise_gradient_function,
)
from ._continuum_nd import gradient_function_nd, maximise_gradient_function_nd
from ._operator import DenseLikelihood
from ._rows import over_rows
from ._solution import RESULTS
from .solvers import MixSQP


class AtomSolution(eqx.Module):
    """A mixing distribution with free atoms, and its continuum certificate.

    Slots hold the active atoms first, in increasing order (of the first
    coordinate in d >= 2); inactive slots have
    `probs = 0`, `active = False` and `atoms = lower` (a finite filler, so that
    the likelihood can be evaluated at every slot).

    Attributes:
        atoms: (K,) atom locations, (K, d) for a latent in d >= 2 dimensions.
        probs: (K,) atom weights, summing to 1 over the active slots.
        active: (K,) which slots hold an atom.
        loglik: () total log-likelihood `sum_i w_i log sum_j q_j G(y_i, u_j)`.
        result: a `spmle.RESULTS` item: `successful` when certified (see
            `gap`, `support_residual`, `stationarity`); `max_steps_reached`
            when the steps or rounds ran out (also when atoms were needed but
            every slot was taken: see `slots_full`); `stagnation` when neither
            Newton nor EM could raise the likelihood; `invalid_input` for
            invalid weights or a non-finite likelihood.
        num_steps: () Newton (or fallback EM) steps.
        num_rounds: () certificate rounds.
        gap: () `max_V D - 1` over `[lower, upper]`; `W * gap` bounds the
            log-likelihood gap to the NPMLE over the continuum.
        support_residual: () `max_j |D(u_j) - 1|` over the atoms.
        max_curvature: () `max_j D''(u_j)` over the atoms (in d >= 2 the
            largest eigenvalue of the Hessian of `D`; negative at a
            nondegenerate optimum).
        stationarity: () the largest Lagrangian gradient entry, `|D(u_j) - 1|`
            and `|q_j D'(u_j)|` (the latter for atoms not frozen at a bound).
        resolution: () certificate grid spacing over the narrowest row
            likelihood width (keep it below about 1/4).
        slots_full: () True when the certificate asked for more atoms than
            `max_atoms` slots (re-run with a larger `max_atoms`).
    """

    atoms: Float[Array, " K"] | Float[Array, "K d"]
    probs: Float[Array, " K"]
    active: Bool[Array, " K"]
    loglik: Float[Array, ""]
    result: RESULTS
    num_steps: Int[Array, ""]
    num_rounds: Int[Array, ""]
    gap: Float[Array, ""]
    support_residual: Float[Array, ""]
    max_curvature: Float[Array, ""]
    stationarity: Float[Array, ""]
    resolution: Float[Array, ""]
    slots_full: Bool[Array, ""]

    @property
    def num_atoms(self) -> Int[Array, ""]:
        return jnp.sum(self.active)

    @property
    def converged(self) -> Bool[Array, ""]:
        return self.result == RESULTS.successful


class _Atoms(eqx.Module):
    # (K,) for a one-dimensional latent, (K, d) for d >= 2 (`_atoms_nd`).
    u: Float[Array, " K"] | Float[Array, "K d"]
    q: Float[Array, " K"]
    active: Bool[Array, " K"]


def _per_atom(x, u):
    """`x` (K,) broadcast against atoms `u` (K,) or (K, d)."""
    return x if u.ndim == 1 else x[:, None]


def _canonical(atoms: _Atoms, lower, drop_tol) -> _Atoms:
    """Drop weights below `drop_tol`, renormalise, sort active atoms first (by
    location, or by the first coordinate in d >= 2)."""
    active = atoms.active & (atoms.q >= drop_tol)
    # The heaviest atom always survives, so a weight vector never empties.
    active = active | (jnp.arange(atoms.q.shape[0]) == jnp.argmax(atoms.q))
    q = jnp.where(active, atoms.q, 0.0)
    q = q / jnp.sum(q)
    key = atoms.u if atoms.u.ndim == 1 else atoms.u[:, 0]
    order = jnp.argsort(jnp.where(active, key, jnp.inf))
    active = active[order]
    u = jnp.where(_per_atom(active, atoms.u), atoms.u[order], lower)
    return _Atoms(u, q[order], active)


def _closest(atoms: _Atoms):
    """`(j, l, distance)`: the closest pair of active atoms, `j < l` (in one
    dimension neighbours, `l = j + 1`); distance inf without a pair."""
    u, active = atoms.u, atoms.active
    if u.ndim == 2:
        return closest_pair(u, active)
    gaps = jnp.where(active[:-1] & active[1:], u[1:] - u[:-1], jnp.inf)
    j = jnp.argmin(gaps)
    return j, j + 1, gaps[j]


def _merge_closest(atoms: _Atoms, distance) -> _Atoms:
    """Merge the closest pair of atoms if nearer than `distance` (weighted-mean
    location, summed weight): two coincident atoms share one likelihood column,
    leaving the Newton system singular."""
    u, q, active = atoms.u, atoms.q, atoms.active
    j, other, gap = _closest(atoms)
    merge = gap < distance
    mass = q[j] + q[other]
    location = (q[j] * u[j] + q[other] * u[other]) / jnp.where(mass > 0, mass, 1.0)
    merged = _Atoms(
        u.at[j].set(location),
        q.at[j].set(mass).at[other].set(0.0),
        active.at[other].set(False),
    )
    return jax.tree.map(lambda a, b: jnp.where(merge, a, b), merged, atoms)


# Newton steps before the first valley move, and between two; the pairs it
# walks are closer than this fraction of the range.
_VALLEY_AFTER, _VALLEY_EVERY, _VALLEY_DISTANCE = 8, 4, 0.05

# Shares of the pair's mass tried by `_valley_move` for its lighter atom, as
# multiples of the present share (at most 1/2; then half-way to an even split,
# and the even split).
_VALLEY_SHARES = (4.0, 2.0, 0.5, 0.25, 0.125, 0.0625, 0.03125, 0.015625)


def _valley_move(log_lik_fn, atoms: _Atoms, w, value, lower, upper, slack):
    """The best of a few redistributions of the closest pair of atoms that keep
    its mass, mean and variance, if it beats `value` (else `atoms` unchanged).

    Two atoms `a < b` with weights `q_a, q_b` enter every row likelihood as
    `M (g(m) + V g''(m) / 2 + O(|b - a|^3))` (mass `M`, mean `m`, variance
    `V`): moving along the family of pairs with the same `(M, m, V)` changes the
    likelihood at third order only, so Newton's quadratic model sees no slope
    along it, yet the family curves in `(u, q)`. At n = 1e6 a pair 0.04 apart
    crawled 4e-4 a step along it for 200 steps towards a better optimum (a light
    atom 0.19 away). This search walks the family in ten likelihood
    evaluations: the lighter atom's share `r` is doubled, quadrupled (up to 1/2)
    or halved up to six times, or moved half-way and all the way to an even
    split, the separation following from `r (1 - r) (b - a)^2 = V`."""
    u, q, active = atoms.u, atoms.q, atoms.active
    j, _, gap = _closest(atoms)
    mass = q[j] + q[j + 1]
    mean = (q[j] * u[j] + q[j + 1] * u[j + 1]) / mass
    share = jnp.minimum(q[j], q[j + 1]) / mass
    variance = share * (1.0 - share) * gap**2
    right_lighter = q[j + 1] <= q[j]
    shares = jnp.concatenate(
        [
            jnp.minimum(share * jnp.array(_VALLEY_SHARES), 0.5),
            jnp.array([0.5 * (share + 0.5), 0.5]),
        ]
    )

    def pair(r):
        # The pair's mean stays put: the left atom (share s) sits `(1 - s)` of the
        # separation below it, the right one `s` above.
        spread = jnp.sqrt(variance / (r * (1.0 - r)))
        s = jnp.where(right_lighter, 1.0 - r, r)
        left, right = mean - (1.0 - s) * spread, mean + s * spread
        moved = _Atoms(
            u.at[j].set(left).at[j + 1].set(right),
            q.at[j].set(s * mass).at[j + 1].set((1.0 - s) * mass),
            active,
        )
        return moved, (left >= lower) & (right <= upper)

    def candidate(r):
        moved, inside = pair(r)
        return jnp.where(inside, _mixture(log_lik_fn, moved, w)[0], -jnp.inf)

    values = jax.lax.map(candidate, shares)
    best = jnp.argmax(values)
    better = jnp.isfinite(gap) & (values[best] > value + slack)
    moved, _ = pair(shares[best])
    return jax.tree.map(lambda a, b: jnp.where(better, a, b), moved, atoms)


def _clusters(grid, grid_probs, num_slots, threshold):
    """One atom per run of consecutive grid points with weight above `threshold`,
    a run split at each interior valley of the weights; runs beyond `num_slots`
    are pooled into the last slot (the certificate repairs that)."""
    order = jnp.argsort(grid)
    grid, p = grid[order], grid_probs[order]
    on = p > threshold
    prev_on = jnp.concatenate([jnp.array([False]), on[:-1]])
    next_on = jnp.concatenate([on[1:], jnp.array([False])])
    prev_p = jnp.concatenate([jnp.array([0.0]), p[:-1]])
    next_p = jnp.concatenate([p[1:], jnp.array([0.0])])
    valley = on & prev_on & next_on & (p < prev_p) & (p <= next_p)
    start = on & (~prev_on | valley)
    label = jnp.minimum(jnp.cumsum(start) - 1, num_slots - 1)
    label = jnp.where(on, label, num_slots)  # off-support points go nowhere
    mass = jax.ops.segment_sum(jnp.where(on, p, 0.0), label, num_slots + 1)
    moment = jax.ops.segment_sum(jnp.where(on, p * grid, 0.0), label, num_slots + 1)
    mass, moment = mass[:num_slots], moment[:num_slots]
    active = mass > 0
    u = jnp.where(active, moment / jnp.where(active, mass, 1.0), grid[0])
    return _Atoms(u, mass, active), jnp.sum(start) > num_slots


def _on_active_slots(fn, atoms: _Atoms):
    """`fn(atoms')` for `atoms'` the first 4, 8 or K slots, the fewest that hold
    every active atom (active atoms come first: `_canonical`). A Newton step's
    cost grows with the slots, not the atoms: with 5 atoms in 16 slots the
    (n, 2K) Gram product paid 10 times the flops it needs (at n = 1e5, 45.7 ms a
    system against 22.3 ms on 8 slots)."""
    k = atoms.q.shape[0]
    sizes = sorted({min(size, k) for size in (4, 8, k)})

    def first(size):
        return lambda: fn(jax.tree.map(lambda x: x[:size], atoms))

    which = jnp.searchsorted(jnp.array(sizes), jnp.sum(atoms.active))
    return jax.lax.switch(which, [first(size) for size in sizes])


def _mixture(log_lik_fn, atoms: _Atoms, w):
    """`(mean log-likelihood, log f)` with normalised row weights `w`."""

    def mixture(atoms):
        log_q = jnp.where(atoms.active, jnp.log(atoms.q), -jnp.inf)

        def block(fn, w):
            log_f = jax.nn.logsumexp(fn(atoms.u) + log_q, axis=1)
            return w @ log_f, log_f

        return over_rows(block, log_lik_fn, atoms.q.shape[0], w)

    return _on_active_slots(mixture, atoms)


def _newton_system(log_lik_fn, atoms: _Atoms, w):
    """Gradient (2K,) and Hessian (2K, 2K) of the mean log-likelihood in
    `z = (u, q)`, with `D, D', D''` at the atoms and the mean log-likelihood;
    zero on inactive slots (assembled on the active ones: `_on_active_slots`)."""
    k = atoms.q.shape[0]

    def system(part):
        size = part.q.shape[0]
        gradient, hessian, (d, d1, d2), value = mixture_derivatives(log_lik_fn, part, w)
        dim = 1 if part.u.ndim == 1 else part.u.shape[1]
        slots = jnp.concatenate([jnp.arange(size * dim), k * dim + jnp.arange(size)])
        width = k * (dim + 1)
        gradient = jnp.zeros(width).at[slots].set(gradient)
        hessian = jnp.zeros((width, width)).at[slots[:, None], slots].set(hessian)

        def pad(x):
            return jnp.zeros((k,) + x.shape[1:]).at[:size].set(x)

        return gradient, hessian, (pad(d), pad(d1), pad(d2)), value

    return _on_active_slots(system, atoms)


def mixture_derivatives(log_lik_fn, atoms: _Atoms, w):
    """`(gradient (2K,), Hessian (2K, 2K), (D, D', D''), value)` of
    `value = sum_i w_i log sum_j q_j exp(log_lik_fn(u)_ij)` in `z = (u, q)` over
    the active slots (zero rows and columns elsewhere), analytically: one pass
    over the rows (in blocks for a `RowwiseLogLik`), where `jax.hessian` would
    take 2K. In d >= 2 dimensions `z = (u flattened row-major, q)`, with `D'`
    (K, d) and `D''` (K, d, d) (`_atoms_nd.mixture_derivatives_nd`)."""
    if atoms.u.ndim == 2:
        return mixture_derivatives_nd(log_lik_fn, atoms.u, atoms.q, atoms.active, w)
    q = atoms.q
    k = q.shape[0]
    log_q = jnp.where(atoms.active, jnp.log(q), -jnp.inf)

    def block(fn, w):
        value, slope, bend = column_derivatives(fn, atoms.u)
        log_f = jax.nn.logsumexp(value + log_q, axis=1)
        s = jnp.where(atoms.active, jnp.exp(value - log_f[:, None]), 0.0)
        d, d1, d2 = w @ s, w @ (s * slope), w @ (s * (slope**2 + bend))
        # Per-row scores of log f in (u, q); their weighted Gram is the Hessian's
        # second term.
        scores = jnp.concatenate([q * s * slope, s], axis=1)
        return (d, d1, d2, scores.T @ (w[:, None] * scores), w @ log_f), ()

    (d, d1, d2, gram, value), _ = over_rows(block, log_lik_fn, 2 * k, w)
    gradient = jnp.concatenate([q * d1, d])
    # The second derivatives of f / f are diagonal per atom: d2/du2 -> q D'',
    # d2/du dq -> D', d2/dq2 -> 0.
    second = jnp.zeros((2 * k, 2 * k))
    index = jnp.arange(k)
    second = second.at[index, index].set(q * d2)
    second = second.at[index, k + index].set(d1).at[k + index, index].set(d1)
    return gradient, second - gram, (d, d1, d2), value


def _frozen(atoms: _Atoms, d1, lower, upper):
    """Atom coordinates on a bound of the range whose derivative points
    outwards (shaped like `atoms.u`)."""
    return _per_atom(atoms.active, atoms.u) & (
        ((atoms.u <= lower) & (d1 < 0)) | ((atoms.u >= upper) & (d1 > 0))
    )


def _stationarity(atoms: _Atoms, d, d1, frozen):
    moving = _per_atom(atoms.active, atoms.u) & ~frozen
    return jnp.maximum(
        jnp.max(jnp.where(atoms.active, jnp.abs(d - 1.0), 0.0)),
        jnp.max(jnp.where(moving, jnp.abs(_per_atom(atoms.q, atoms.u) * d1), 0.0)),
    )


def _newton_direction(gradient, hessian, atoms: _Atoms, frozen):
    """An ascent direction from the Hessian reduced to `sum q = 0`, its
    eigenvalues made negative (flipped, or clipped away from 0)."""
    k = atoms.q.shape[0]
    shape = atoms.u.shape
    moving = (_per_atom(atoms.active, atoms.u) & ~frozen).reshape(-1)
    free = jnp.concatenate([moving, atoms.active])
    # The u rows scale with q_j (an eigenvalue ~ q_j D''): scaling them by
    # q_j^(-1/2) keeps a light atom's curvature visible to the clip.
    root_q = jnp.sqrt(jnp.maximum(atoms.q, 1e-300))
    root_q = jnp.broadcast_to(_per_atom(root_q, atoms.u), shape).reshape(-1)
    scale = jnp.concatenate([root_q, jnp.ones(k)])
    size = root_q.shape[0]
    g = jnp.where(free, gradient / scale, 0.0)
    h = hessian / (scale[:, None] * scale[None, :])
    h = jnp.where(free[:, None] & free[None, :], h, 0.0) - jnp.diag(
        jnp.where(free, 0.0, 1.0)
    )
    a = jnp.concatenate([jnp.zeros(size), atoms.active.astype(g.dtype)])
    a = a / jnp.linalg.norm(a)
    project = jnp.eye(size + k) - jnp.outer(a, a)
    g = project @ g
    big = 1.0 + jnp.max(jnp.abs(h))
    # The constraint direction gets a large negative eigenvalue of its own, so
    # that it separates from the reduced Hessian's eigenvectors.
    reduced = project @ h @ project - big * jnp.outer(a, a)
    values, vectors = jnp.linalg.eigh(reduced)
    floor = 1e-10 * jnp.max(jnp.abs(values))
    magnitude = jnp.maximum(jnp.abs(values), floor)
    step = vectors @ ((vectors.T @ g) / magnitude)
    step = jnp.where(free, step, 0.0) / scale
    return step[:size].reshape(shape), step[size:], g @ (step * scale)


class _Newton(eqx.Module):
    atoms: _Atoms
    steps: Int[Array, ""]
    stationarity: Float[Array, ""]
    stationary: Bool[Array, ""]
    stuck: Bool[Array, ""]
    # The direction, D and value at `atoms`: measured once a step.
    du: Float[Array, " K"] | Float[Array, "K d"]
    dq: Float[Array, " K"]
    slope: Float[Array, ""]
    d: Float[Array, " K"]
    value: Float[Array, ""]


def _round_off(value):
    """The round-off floor of a mean log-likelihood: ascent below it is
    invisible."""
    return 1e-13 * (1.0 + jnp.abs(value))


def _newton(log_lik_fn, atoms, w, lower, upper, step_cap, options):
    """Newton steps until stationary, stuck, or the step budget is spent."""
    one_dimensional = atoms.u.ndim == 1
    # The range's length, or the box's diagonal in d >= 2.
    span = upper - lower if one_dimensional else jnp.linalg.norm(upper - lower)
    radius_cap = options["trust"] * span
    merge_distance = options["merge"] * span

    def cond(state: _Newton):
        return ~state.stationary & ~state.stuck & (state.steps < step_cap)

    def body(state: _Newton):
        atoms = state.atoms
        du, dq, slope, d, base = (
            state.du,
            state.dq,
            state.slope,
            state.d,
            state.value,
        )
        # Trust radius: never past half the gap to the neighbour an atom moves
        # towards, never beyond the cap.
        u, active = atoms.u, atoms.active
        if one_dimensional:
            gaps = jnp.where(active[:-1] & active[1:], u[1:] - u[:-1], jnp.inf)
            room = 0.5 * jnp.where(
                du > 0,
                jnp.concatenate([gaps, jnp.array([jnp.inf])]),
                jnp.concatenate([jnp.array([jnp.inf]), gaps]),
            )
            move = jnp.abs(du)
        else:
            # In d >= 2, never past half the distance to the nearest atom.
            room = 0.5 * nearest_distance(u, active)
            move = jnp.linalg.norm(du, axis=1)
        radius = jnp.minimum(room, radius_cap)
        t_trust = jnp.min(jnp.where(move > 0, radius / jnp.maximum(move, 1e-300), 1.0))
        # Fraction to the boundary: a weight keeps at least 1% of itself.
        t_bound = jnp.min(
            jnp.where(active & (dq < 0), 0.99 * atoms.q / jnp.maximum(-dq, 1e-300), 1.0)
        )
        t0 = jnp.minimum(1.0, jnp.minimum(t_trust, t_bound))
        slack = _round_off(base)

        def trial(t):
            q = jnp.where(active, jnp.maximum(atoms.q + t * dq, 0.0), 0.0)
            moved = _Atoms(jnp.clip(u + t * du, lower, upper), q / jnp.sum(q), active)
            return moved, _mixture(log_lik_fn, moved, w)[0]

        def backtrack_cond(c):
            t, value, _ = c
            return ~(value >= base + 1e-4 * t * slope - slack) & (t > 1e-10 * t0)

        def backtrack(c):
            t, _, _ = c
            moved, value = trial(0.5 * t)
            return 0.5 * t, value, moved

        def armijo(t, value):
            return (value >= base + 1e-4 * t * slope - slack) & jnp.isfinite(value)

        # A step that takes weights below 0 first tries dropping those atoms (the
        # projected step): the fraction-to-boundary rule alone divides such a
        # weight by 100 a step (a 4e-4 atom took 7 steps to go at n = 1e5).
        crossing = jnp.any(active & (atoms.q + jnp.minimum(1.0, t_trust) * dq <= 0))
        t_drop = jnp.minimum(1.0, t_trust)
        dropped, value_drop = jax.lax.cond(
            crossing, lambda: trial(t_drop), lambda: (atoms, -jnp.inf)
        )
        drop = crossing & armijo(t_drop, value_drop)
        first, value0 = trial(t0)
        t, value, moved = jax.lax.while_loop(
            backtrack_cond,
            backtrack,
            jax.tree.map(
                lambda a, b: jnp.where(drop, a, b),
                (t_drop, value_drop, dropped),
                (t0, value0, first),
            ),
        )
        accepted = armijo(t, value)
        # Past a full step, double while the likelihood keeps rising (within the
        # trust radius and the boundary rule): where the reduced Hessian is
        # indefinite, e.g. two atoms a few hundredths apart trading mass, the
        # flipped Newton step is short and one atom crawled 0.9 over 50 steps.
        t_max = jnp.minimum(t_trust, t_bound)

        def longer(c):
            t, _, _, rising = c
            return rising & (2 * t <= t_max) & (t < 2.0**10)

        def double(c):
            t, value, moved, _ = c
            moved2, value2 = trial(2 * t)
            rising = value2 > value
            keep = jax.tree.map(
                lambda a, b: jnp.where(rising, a, b),
                (2 * t, value2, moved2),
                (t, value, moved),
            )
            return (*keep, rising)

        t, value, moved, _ = jax.lax.cond(
            accepted & ~drop & (t == 1.0),
            lambda c: jax.lax.while_loop(longer, double, c),
            lambda c: c,
            (t, value, moved, jnp.array(True)),
        )

        def fallback():
            # EM on the weights never lowers the likelihood: the fallback step.
            q_em = jnp.where(active, atoms.q * d, 0.0)
            em = _Atoms(u, q_em / jnp.sum(q_em), active)
            em_ok = _mixture(log_lik_fn, em, w)[0] > base
            stay = jax.tree.map(lambda a, b: jnp.where(em_ok, a, b), em, atoms)
            return stay, em_ok

        new, em_ok = jax.lax.cond(accepted, lambda: (moved, jnp.array(True)), fallback)
        new = _canonical(new, lower, options["drop"])
        new = _canonical(_merge_closest(new, merge_distance), lower, options["drop"])
        steps = state.steps + 1
        if not one_dimensional:
            return _start(new, steps, ~accepted & ~em_ok)
        # A run of steps without stationarity and a close pair: walk the pair's
        # flat family (`_valley_move`) every few steps (one dimension only).
        close = _closest(new)[2] < _VALLEY_DISTANCE * (upper - lower)
        new = jax.lax.cond(
            close & (steps >= _VALLEY_AFTER) & (steps % _VALLEY_EVERY == 0),
            lambda: _canonical(
                _valley_move(
                    log_lik_fn,
                    new,
                    w,
                    _mixture(log_lik_fn, new, w)[0],
                    lower,
                    upper,
                    _round_off(base),
                ),
                lower,
                options["drop"],
            ),
            lambda: new,
        )
        return _start(new, steps, ~accepted & ~em_ok)

    def _start(atoms, steps, stuck):
        gradient, hessian, (d, d1, _), value = _newton_system(log_lik_fn, atoms, w)
        frozen = _frozen(atoms, d1, lower, upper)
        stationarity = _stationarity(atoms, d, d1, frozen)
        du, dq, slope = _newton_direction(gradient, hessian, atoms, frozen)
        # Stationary to `grad_tol`, or to the certificate's `tol` once Newton's
        # predicted gain (the decrement `slope`) is below the round-off of the
        # value or 1e-3 of `tol`, the certificate's own bound on the gap in mean
        # log-likelihood. Near a pair of atoms a few hundredths apart the
        # likelihood is flat to third order, and at n = 1e6 Newton spent 200
        # steps predicting gains of 1e-16 (a 2e-6 atom held |D - 1| = 1.2e-10),
        # and 99 more gaining 1e-12 a step.
        floor = jnp.maximum(_round_off(value), 1e-3 * options["tol"])
        stationary = (stationarity <= options["grad_tol"]) | (
            (stationarity <= options["tol"]) & (slope <= floor)
        )
        return _Newton(
            atoms,
            steps,
            stationarity,
            stationary,
            stuck,
            du,
            dq,
            slope,
            d,
            value,
        )

    return jax.lax.while_loop(cond, body, _start(atoms, jnp.array(0), jnp.array(False)))


class _Round(eqx.Module):
    atoms: _Atoms
    steps: Int[Array, ""]
    rounds: Int[Array, ""]
    candidates: Float[Array, " L"]
    wanted: Bool[Array, " L"]
    done: Bool[Array, ""]
    certified: Bool[Array, ""]
    stuck: Bool[Array, ""]
    slots_full: Bool[Array, ""]
    gap: Float[Array, ""]
    stationarity: Float[Array, ""]
    resolution: Float[Array, ""]


def _add_atoms(log_lik_fn, atoms: _Atoms, weights, candidates, wanted, lower, tol):
    """Put the wanted candidates in free slots at weight 0 and re-solve all the
    weights by mixSQP on the (n, K) likelihood of the slots (Wang's CNM step)."""
    free = ~atoms.active
    # The r-th free slot takes the r-th wanted candidate (candidates are sorted
    # by D, so the highest go first when slots are short).
    free_rank = jnp.cumsum(free) - 1
    wanted_rank = jnp.cumsum(wanted) - 1
    num_wanted = jnp.sum(wanted)
    source = jnp.argmax(
        (wanted_rank[None, :] == free_rank[:, None]) & wanted[None, :], axis=1
    )
    take = free & (free_rank < num_wanted)
    u = jnp.where(_per_atom(take, atoms.u), candidates[source], atoms.u)
    active = atoms.active | take
    log_lik = jnp.where(active[None, :], log_lik_fn(u), -jnp.inf)
    solution = MixSQP(tol=tol * 1e-2).solve(
        DenseLikelihood.from_log_lik(log_lik), weights, jnp.where(take, 0.0, atoms.q)
    )
    ok = jnp.all(jnp.isfinite(solution.probs))
    q = jnp.where(ok & active, solution.probs, jnp.where(take, 0.0, atoms.q))
    return _Atoms(u, q, active), num_wanted > jnp.sum(free)


def refine_atoms(
    log_lik_fn: LogLikFn,
    weights: Float[Array, " n"] | None,
    grid: Float[Array, " m"],
    grid_probs: Float[Array, " m"],
    *,
    lower: float | Float[Array, ""] | None = None,
    upper: float | Float[Array, ""] | None = None,
    max_atoms: int = 16,
    tol: float = 1e-8,
    grad_tol: float = 1e-10,
    max_steps: int = 200,
    max_rounds: int = 20,
    num_points: int = 2001,
    cluster_threshold: float = 1e-10,
    drop_tol: float = 1e-10,
    merge_distance: float = 1e-4,
    trust_radius: float = 0.1,
    start: tuple[Float[Array, " K"], Float[Array, " K"], Bool[Array, " K"]]
    | None = None,
    certify: bool = True,
) -> AtomSolution:
    """The NPMLE of a mixing distribution over `[lower, upper]` (a box in d >= 2
    dimensions), with atoms free to move, refined from a grid solution at fixed
    parameters.

    In d >= 2 dimensions points are (k, d) arrays: atoms start at the weighted
    means of connected clusters of grid weight, each atom's Newton block is
    d x d, atoms merge by Euclidean distance, the certificate grid is a product
    grid over the box (32 points per axis, 128 where a row likelihood is
    narrower than 4 of its spacings) with Newton ascent on `D` in each cell of
    its best local maxima, and the valley move is left out.

    Args:
        log_lik_fn: `points (k,) or (k, d) -> (n, k)` log-likelihoods of the n
            observations at arbitrary latent points, column `j` depending on
            `points[j]` only and twice differentiable in it (pure JAX). A
            `spmle.npmle.RowwiseLogLik` says which of its inputs are the rows:
            then every sum over observations runs in blocks of rows (the
            Newton system 4x faster at n = 1e6), with temporaries independent
            of n.
        weights: optional (n,) nonnegative row weights (default all 1).
        grid: (m,) or (m, d) the grid of a grid NPMLE (any order; in d >= 2,
            e.g. a `spmle.Grid.product`).
        grid_probs: (m,) its weights, e.g. `spmle.npmle(...).probs`.
        lower, upper: the latent range (default: the grid's range), (d,) each
            in d >= 2.
        max_atoms: static number of atom slots K.
        tol: certificate tolerance on `max_V D - 1` and `|D(u_j) - 1|`.
        grad_tol: Newton's tolerance on the Lagrangian gradient (`stationarity`);
            Newton also stops once `stationarity <= tol` and its predicted gain
            in mean log-likelihood is below `1e-3 * tol` (or round-off).
        max_steps: cap on Newton steps over all rounds.
        max_rounds: cap on certificate rounds (each may add atoms).
        num_points: the most points of the certificate grid on `[lower, upper]`:
            it starts at 128 and takes as many more as keep the grid spacing
            within a quarter of the narrowest row likelihood width (no bump of
            `D` is narrower). Keep `resolution <= 1/4` in the answer; raise
            `num_points` if not. In d >= 2 the product grid has at most
            `16 num_points` points.
        cluster_threshold: grid weights above it start atoms.
        drop_tol: atoms lighter than this are dropped.
        merge_distance: atoms closer than this times `upper - lower` (the box's
            diagonal in d >= 2) merge.
        trust_radius: cap on one Newton move of an atom, times the same length.
        start: optional `(atoms, probs, active)`, (max_atoms,) each (atoms
            (max_atoms, d) in d >= 2), to start
            from instead of the grid's clusters, e.g. an `AtomSolution`'s at
            nearby parameters (no active slot means a cold start). The answer
            is the certified NPMLE either way; a start near it saves most
            Newton steps.
        certify: False skips the search over the continuum: Newton on the atoms
            of `start` only (no atom is added), `successful` once they are
            stationary, `gap` and `resolution` NaN. For a warm start inside an
            optimiser, whose answer is certified once at its end
            (`spmle.estimation.minimise`).

    Returns:
        An `AtomSolution` (K = `max_atoms` slots).

    Examples:
        >>> import jax, jax.numpy as jnp, spmle
        >>> from spmle.npmle import refine_atoms
        >>> jax.config.update("jax_enable_x64", True)
        >>> x = jnp.array([-2.1, -1.8, -2.3, 1.9, 2.2, 2.4, 1.7])
        >>> def log_lik_fn(v):
        ...     return jax.scipy.stats.norm.logpdf(x[:, None], v[None, :], 0.5)
        >>> grid = jnp.linspace(-3.0, 3.0, 13)
        >>> start = spmle.npmle(log_lik_fn(grid))
        >>> sol = refine_atoms(log_lik_fn, None, grid, start.probs)
        >>> bool(sol.converged), int(sol.num_atoms)
        (True, 2)
        >>> bool(sol.loglik >= start.loglik)
        True
    """
    grid = as_float64(grid, "grid")
    grid_probs = as_float64(grid_probs, "grid_probs")
    if grid.ndim not in (1, 2) or grid_probs.shape != grid.shape[:1]:
        raise ValueError(
            f"`grid` must be (m,) or (m, d) points and `grid_probs` (m,) weights; "
            f"got {grid.shape} and {grid_probs.shape}."
        )
    point = grid.shape[1:]
    lower = jnp.min(grid, 0) if lower is None else jnp.asarray(lower, grid.dtype)
    upper = jnp.max(grid, 0) if upper is None else jnp.asarray(upper, grid.dtype)
    if lower.shape != point or upper.shape != point:
        raise ValueError(
            f"`lower` and `upper` must have the shape {point} of one grid point; "
            f"got {lower.shape} and {upper.shape}."
        )
    n = jax.eval_shape(log_lik_fn, grid[:2]).shape[0]
    weights = as_weights(weights, n, "log_lik_fn")
    if start is None:
        start = (
            jnp.broadcast_to(lower, (max_atoms,) + point),
            jnp.zeros((max_atoms,)),
            jnp.zeros((max_atoms,), bool),
        )
    elif [x.shape for x in start] != [(max_atoms,) + point] + [(max_atoms,)] * 2:
        raise ValueError(
            f"`start` must be `(atoms {(max_atoms,) + point}, probs ({max_atoms},), "
            f"active ({max_atoms},))` (`max_atoms` slots); got shapes "
            f"{[x.shape for x in start]}."
        )
    settings = dict(
        max_atoms=max_atoms,
        tol=tol,
        grad_tol=grad_tol,
        max_steps=max_steps,
        max_rounds=max_rounds,
        num_points=num_points,
        cluster_threshold=cluster_threshold,
        drop_tol=drop_tol,
        merge_distance=merge_distance,
        trust_radius=trust_radius,
        certify=certify,
    )
    # Compiled once per function, shapes and settings, so that eager calls
    # reuse one program; under an outer `jit` this inlines.
    return _refine(
        log_lik_fn, weights, grid, grid_probs, lower, upper, start, **settings
    )


@compiled
def _refine(
    log_lik_fn,
    weights,
    grid,
    grid_probs,
    lower,
    upper,
    start,
    *,
    max_atoms,
    tol,
    grad_tol,
    max_steps,
    max_rounds,
    num_points,
    cluster_threshold,
    drop_tol,
    merge_distance,
    trust_radius,
    certify,
):
    w = weights / jnp.sum(weights)
    options = dict(
        grad_tol=grad_tol,
        tol=tol,
        trust=trust_radius,
        merge=merge_distance,
        drop=drop_tol,
    )
    num_maxima = max_atoms
    point = grid.shape[1:]

    if grid.ndim == 1:
        atoms, overflow = _clusters(grid, grid_probs, max_atoms, cluster_threshold)

        def certificate(log_f):
            return maximise_gradient_function(
                log_lik_fn,
                log_f,
                w,
                lower,
                upper,
                num_points=num_points,
                num_maxima=num_maxima,
            )

        def at_atoms(u, log_f):
            return gradient_function(log_lik_fn, u, log_f, w)

    else:
        u, q, active, overflow = clusters_nd(
            grid, grid_probs, max_atoms, cluster_threshold
        )
        atoms = _Atoms(u, q, active)
        # Points per axis: 32, and 128 where those leave the resolution above
        # 1/4 (a row likelihood narrower than 4 grid spacings), as far as
        # `num_points` allows 16 times its count (the 1-D grid refines likewise).
        sizes = [s for s in (32, 128) if s ** point[0] <= 16 * num_points] or [32]

        def certificate(log_f):
            def on(size):
                return lambda: maximise_gradient_function_nd(
                    log_lik_fn,
                    log_f,
                    w,
                    lower,
                    upper,
                    points_per_axis=size,
                    num_maxima=num_maxima,
                )

            coarse = on(sizes[0])()
            if len(sizes) == 1:
                return coarse
            return jax.lax.cond(
                coarse.resolution <= _RESOLUTION, lambda: coarse, on(sizes[1])
            )

        def at_atoms(u, log_f):
            return gradient_function_nd(log_lik_fn, u, log_f, w)

    # A warm start (atoms at nearby parameters) replaces the grid's clusters.
    warm = _Atoms(*start)
    use_warm = jnp.any(warm.active)
    atoms = jax.tree.map(lambda a, b: jnp.where(use_warm, a, b), warm, atoms)
    overflow = overflow & ~use_warm
    atoms = _canonical(
        _Atoms(jnp.clip(atoms.u, lower, upper), atoms.q, atoms.active), lower, drop_tol
    )

    def cond(state: _Round):
        return ~state.done & (state.rounds < max_rounds)

    def body(state: _Round):
        atoms, full = jax.lax.cond(
            jnp.any(state.wanted),
            lambda: _add_atoms(
                log_lik_fn,
                state.atoms,
                weights,
                state.candidates,
                state.wanted,
                lower,
                tol,
            ),
            lambda: (state.atoms, jnp.array(False)),
        )
        atoms = _canonical(atoms, lower, drop_tol)
        newton = _newton(
            log_lik_fn, atoms, w, lower, upper, max_steps - state.steps, options
        )
        atoms = newton.atoms
        _, log_f = _mixture(log_lik_fn, atoms, w)
        maximum = certificate(log_f)
        d, _, _ = at_atoms(atoms.u, log_f)
        support = jnp.max(jnp.where(atoms.active, jnp.abs(d - 1.0), 0.0))
        gap = maximum.max_value - 1.0
        stationary = newton.stationary
        certified = stationary & (gap <= tol) & (support <= tol)
        wanted = (maximum.values > 1.0 + tol) & stationary
        steps = state.steps + newton.steps
        out_of_steps = steps >= max_steps
        no_room = jnp.all(atoms.active) & jnp.any(wanted)
        done = certified | newton.stuck | out_of_steps | no_room
        return _Round(
            atoms=atoms,
            steps=steps,
            rounds=state.rounds + 1,
            candidates=maximum.points,
            wanted=wanted & ~done,
            done=done,
            certified=certified,
            stuck=newton.stuck & ~certified,
            slots_full=state.slots_full | full | (no_room & ~certified),
            gap=gap,
            stationarity=newton.stationarity,
            resolution=maximum.resolution,
        )

    nan = jnp.array(jnp.nan)
    start = _Round(
        atoms=atoms,
        steps=jnp.array(0),
        rounds=jnp.array(0),
        candidates=jnp.zeros((num_maxima,) + point),
        wanted=jnp.zeros(num_maxima, bool),
        done=jnp.array(False),
        certified=jnp.array(False),
        stuck=jnp.array(False),
        slots_full=overflow,
        gap=nan,
        stationarity=nan,
        resolution=nan,
    )
    if certify:
        final = jax.lax.while_loop(cond, body, start)
    else:
        newton = _newton(log_lik_fn, atoms, w, lower, upper, max_steps, options)
        final = eqx.tree_at(
            lambda r: (r.atoms, r.steps, r.certified, r.stuck, r.stationarity),
            start,
            (
                newton.atoms,
                newton.steps,
                newton.stationary,
                newton.stuck & ~newton.stationary,
                newton.stationarity,
            ),
        )
    atoms = final.atoms
    _, log_f = _mixture(log_lik_fn, atoms, w)
    d, _, d2 = at_atoms(atoms.u, log_f)
    if d2.ndim == 3:
        # In d >= 2, the largest eigenvalue of each atom's D'' (K, d, d).
        d2 = jnp.linalg.eigvalsh(d2)[:, -1]
    support = jnp.max(jnp.where(atoms.active, jnp.abs(d - 1.0), 0.0))
    curvature = jnp.max(jnp.where(atoms.active, d2, -jnp.inf))
    loglik = jnp.dot(weights, log_f)
    invalid = (
        ~jnp.all(jnp.isfinite(weights))
        | jnp.any(weights < 0)
        | ~jnp.any(weights > 0)
        | ~jnp.isfinite(loglik)
        | (~jnp.isfinite(final.gap) if certify else ~jnp.isfinite(final.stationarity))
    )
    failure = RESULTS.where(final.stuck, RESULTS.stagnation, RESULTS.max_steps_reached)
    result = RESULTS.where(final.certified, RESULTS.successful, failure)
    result = RESULTS.where(invalid, RESULTS.invalid_input, result)
    return AtomSolution(
        atoms=atoms.u,
        probs=atoms.q,
        active=atoms.active,
        loglik=loglik,
        result=result,
        num_steps=final.steps,
        num_rounds=final.rounds,
        gap=final.gap,
        support_residual=support,
        max_curvature=curvature,
        stationarity=final.stationarity,
        resolution=final.resolution,
        slots_full=final.slots_full,
    )
