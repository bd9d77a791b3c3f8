"""The likelihood matrix, seen only through its products.

Every layer above touches the row-shifted likelihood matrix
`A_ik = exp(l_ik - max_k l_ik)` (each row has maximum 1) only through the methods
of an `AbstractLikelihoodOperator`: `A x`, `A' v`, `A' diag(d) A`, per-row mixture
likelihoods for grouped weights and their pullback, and row selection. The solver,
the certificate, the derivative rules, the profile objective and the chunked
Hessian never read a matrix, so an operator that recomputes row blocks from the
model (`RowChunkedLikelihood`), or one whose rows are sharded over devices, plugs
in unchanged. Derivatives flow through an operator's array leaves: the derivative
rules differentiate these methods (`jax.jvp`), never the solver.
"""

import abc
import functools
import math
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from .._internal import chunk_size, map_chunks, split_rows, sum_chunks


class AbstractLikelihoodOperator(eqx.Module):
    """The (n, m) row-shifted likelihood matrix `A`, seen through its products.

    `row_max` (n,) holds the shifts (`l_ik = log A_ik + row_max_i`); it carries no
    derivative. Implement `shape`, `mv`, `rmv`, `weighted_gram` and `take_rows`;
    `grouped_mv` and `grouped_mv_pullback` have generic defaults.
    """

    row_max: eqx.AbstractVar[Float[Array, " n"]]

    @property
    @abc.abstractmethod
    def shape(self) -> tuple[int, int]:
        """`(n, m)`: observations by grid points."""

    @abc.abstractmethod
    def mv(self, x: Float[Array, "m *k"]) -> Float[Array, "n *k"]:
        """`A @ x` for a vector (m,) or a matrix (m, k)."""

    @abc.abstractmethod
    def rmv(self, v: Float[Array, " n"]) -> Float[Array, " m"]:
        """`A' v`."""

    @abc.abstractmethod
    def weighted_gram(
        self,
        d: Float[Array, " n"] | None,
        *,
        single_precision: bool = False,
        columns: Int[Array, " s"] | None = None,
    ) -> Float[Array, "m m"]:
        """`A' diag(d) A` for `d >= 0` (`A'A` for `d=None`); optionally in float32;
        with `columns`, of those columns of `A` only: (s, s)."""

    @abc.abstractmethod
    def take_rows(self, index: Int[Array, " r"]) -> "AbstractLikelihoodOperator":
        """The (r, m) operator of the rows `index` (linear in the array leaves, so
        that a derivative of the result is the selection of the derivative)."""

    def ratios(
        self, x: Float[Array, " m"], w: Float[Array, " n"]
    ) -> tuple[Float[Array, " m"], Float[Array, " n"]]:
        """`(A'(w / A x), A x)`: the gradient ratios `d` of the mixture `x` and
        its row likelihoods `u` (one pass over `A` where the operator can)."""
        u = self.mv(x)
        return self.rmv(w / u), u

    def rmv_and_gram(
        self,
        v: Float[Array, " n"],
        d: Float[Array, " n"],
        columns: Int[Array, " s"],
        *,
        single_precision: bool = False,
    ) -> tuple[Float[Array, " m"], Float[Array, "s s"]]:
        """`(A' v, A_S' diag(d) A_S)` with `A_S` the `columns` of `A`, in one
        pass over `A` where the operator can."""
        gram = self.weighted_gram(d, single_precision=single_precision, columns=columns)
        return self.rmv(v), gram

    def grouped_mv(
        self, probs: Float[Array, "G m"], labels: Int[Array, " n"]
    ) -> Float[Array, " n"]:
        """`u_i = sum_k A_ik probs[labels_i, k]`: each row's mixture likelihood
        under its own group's weights."""
        every = self.mv(probs.T)  # (n, G)
        return jnp.take_along_axis(every, labels[:, None], axis=1)[:, 0]

    def grouped_mv_pullback(
        self,
        probs: Float[Array, "G m"],
        labels: Int[Array, " n"],
        cotangent: Float[Array, " n"],
    ) -> "AbstractLikelihoodOperator":
        """The cotangent of this operator's array leaves for
        `cotangent . grouped_mv(probs, labels)` at fixed `probs`."""
        _, pullback = eqx.filter_vjp(lambda op: op.grouped_mv(probs, labels), self)
        return pullback(cotangent)[0]


# exp(x) for x <= 0 by Cody-Waite reduction (x = k ln 2 + r, |r| <= ln 2 / 2) and
# the degree-13 Taylor polynomial of exp(r) (remainder below 1e-17), scaled by
# 2^k through the exponent bits. XLA CPU's float64 `exp` is scalar code: on the
# (1e6, 300) matrix of a normal-means fit it took 7.8 s where this takes a third
# of that, within one ulp of numpy's (2.2e-16 relative over 3e8 entries).
# Results below 2^-1022 (x < -708: a likelihood 1e-308 times the row's largest)
# are flushed to 0; -inf gives 0 and NaN stays NaN.
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_TAYLOR = tuple(1.0 / math.factorial(k) for k in range(14))


def _exp_nonpositive(x):
    k = jnp.clip(jnp.round(x * (1.0 / math.log(2.0))), -1022.0, 0.0)
    r = (x - k * _LN2_HI) - k * _LN2_LO
    p = jnp.full_like(r, _TAYLOR[-1])
    for c in reversed(_TAYLOR[:-1]):
        p = p * r + c
    bits = (k.astype(jnp.int64) + 1023) << 52
    return jnp.where(x < -708.0, 0.0, p * jax.lax.bitcast_convert_type(bits, x.dtype))


@jax.custom_jvp
def _shifted_likelihood(log_lik, row_max):
    shifted = log_lik - row_max[:, None]
    if shifted.dtype != jnp.float64:
        return jnp.exp(shifted)
    return _exp_nonpositive(shifted)


@_shifted_likelihood.defjvp
def _shifted_likelihood_jvp(primals, tangents):
    out = _shifted_likelihood(*primals)
    # -inf entries have zero likelihood: their tangent must not turn 0 * inf into
    # NaN. The shift carries no derivative (it cancels in every ratio).
    return out, jnp.where(out > 0, out * tangents[0], 0.0)


def shifted_likelihood(
    log_lik: Float[Array, "n m"],
) -> tuple[Float[Array, "n m"], Float[Array, " n"]]:
    """`(A, row_max)` of a log-likelihood matrix, differentiable in `log_lik`;
    `row_max` is NaN in a row with a NaN entry (the input checks rely on it)."""
    row_max = jax.lax.stop_gradient(_row_max(log_lik))
    return _shifted_likelihood(log_lik, row_max), row_max


def _row_max(log_lik):
    # XLA CPU's maximum does not propagate NaN: say so explicitly.
    has_nan = jnp.any(jnp.isnan(log_lik), axis=1)
    return jnp.where(has_nan, jnp.nan, jnp.max(log_lik, axis=1))


class DenseLikelihood(AbstractLikelihoodOperator):
    """`A` held as a dense (n, m) array, with its row shifts.

    Examples:
        >>> import jax, jax.numpy as jnp, spmle
        >>> jax.config.update("jax_enable_x64", True)
        >>> log_lik = jnp.log(jnp.array([[0.5, 0.25], [0.1, 0.4]]))
        >>> op = spmle.DenseLikelihood.from_log_lik(log_lik)
        >>> op.mv(jnp.array([0.5, 0.5]))  # (n,) mixture likelihoods / exp(row_max)
        Array([0.75 , 0.625], dtype=float64)
    """

    matrix: Float[Array, "n m"]
    row_max: Float[Array, " n"]

    @classmethod
    def from_log_lik(cls, log_lik: Float[Array, "n m"]) -> "DenseLikelihood":
        """Row-shift a log-likelihood matrix (differentiable in `log_lik`)."""
        return cls(*shifted_likelihood(log_lik))

    @property
    def shape(self) -> tuple[int, int]:
        return self.matrix.shape

    def mv(self, x):
        return self.matrix @ x

    def rmv(self, v):
        # `v @ A` keeps the contiguous layout; XLA CPU is ~10x slower on `A.T @ v`.
        return v @ self.matrix

    def weighted_gram(self, d, *, single_precision=False, columns=None):
        return weighted_gram(
            self.matrix, d, single_precision=single_precision, columns=columns
        )

    def ratios(self, x, w):
        def block(rows, w_rows):
            u = rows @ x
            return (w_rows / u) @ rows, u

        return pass_rows(block, (self.matrix, w))

    def rmv_and_gram(self, v, d, columns, *, single_precision=False):
        scale = _gram_scale(d)

        def block(rows, v_rows, d_rows):
            gram = _gram_block(rows[:, columns], d_rows, scale, single_precision)
            return v_rows @ rows, gram

        return pass_rows(block, (self.matrix, v, d), summed=2)

    def take_rows(self, index):
        return DenseLikelihood(self.matrix[index], self.row_max[index])

    def grouped_mv(self, probs, labels):
        if probs.shape[0] == 1:  # one group: a matrix-vector product
            return self.matrix @ probs[0]
        return jnp.sum(self.matrix * probs[labels], axis=1)


class RowChunkedLikelihood(AbstractLikelihoodOperator):
    """`A` recomputed in blocks of rows from a function, never held whole.

    Each product runs over blocks of `size` rows (`lax.map`/`scan`), so memory is
    that of one (size, m) block whatever n; every product re-evaluates the
    log-likelihood, which trades time for memory. Derivatives in `params` flow
    through every method.

    Build it with `RowChunkedLikelihood.from_function(log_lik_fn, params, data)`
    where `log_lik_fn(params, rows) -> (r, m)` gives the log-likelihoods of the
    rows `rows` (a slice of `data`, leading axis r).

    Examples:
        >>> import jax, jax.numpy as jnp, spmle
        >>> jax.config.update("jax_enable_x64", True)
        >>> grid = jnp.linspace(-3, 3, 7)
        >>> def log_lik_fn(scale, rows):
        ...     return jax.scipy.stats.norm.logpdf(rows["x"][:, None], grid, scale)
        >>> data = {"x": jnp.linspace(-2, 2, 10)}
        >>> op = spmle.RowChunkedLikelihood.from_function(
        ...     log_lik_fn, jnp.array(1.0), data, chunk_rows=4)
        >>> dense = spmle.DenseLikelihood.from_log_lik(log_lik_fn(1.0, data))
        >>> bool(jnp.allclose(op.rmv(jnp.ones(10)), dense.rmv(jnp.ones(10))))
        True
    """

    log_lik_fn: Callable
    params: Any
    chunks: Any  # data, every leaf (num_chunks, size, ...)
    row_max: Float[Array, " n"]
    num_rows: int = eqx.field(static=True)
    num_points: int = eqx.field(static=True)
    # Optional (num_chunks, size, m) blocks of A already built (e.g. for a solve):
    # `grouped_mv_pullback` then reads them instead of recomputing the shift.
    blocks: Any = None

    @classmethod
    def from_function(
        cls, log_lik_fn, params, data, *, chunk_rows: int | None = None
    ) -> "RowChunkedLikelihood":
        """From `log_lik_fn(params, rows) -> (r, m)` and `data` (leading axis n);
        `chunk_rows` rows per block (default about 4 MB of float64 per block)."""
        n = jax.tree.leaves(data)[0].shape[0]
        first = jax.tree.map(lambda x: x[:1], data)
        m = jax.eval_shape(log_lik_fn, params, first).shape[1]
        chunks = split_rows(data, chunk_size(n, m, chunk_rows))
        row_max = map_chunks(lambda rows: _row_max(log_lik_fn(params, rows)), chunks)
        row_max = jax.lax.stop_gradient(row_max.reshape(-1)[:n])
        return cls(log_lik_fn, params, chunks, row_max, n, m)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.num_rows, self.num_points)

    def _by_chunk(self, rows: Float[Array, " n *k"]) -> Float[Array, "c size *k"]:
        """An (n, ...) row array split like `chunks` (padding repeats row 0)."""
        size = jax.tree.leaves(self.chunks)[0].shape[1]
        return split_rows(rows, size)

    def _block(self, rows, row_max, params=None):
        params = self.params if params is None else params
        return _shifted_likelihood(self.log_lik_fn(params, rows), row_max)

    def mv(self, x):
        # Recomputed in reverse mode instead of stored: one block at a time.
        @jax.checkpoint
        def one(chunk):
            rows, row_max = chunk
            return self._block(rows, row_max) @ x

        out = map_chunks(one, (self.chunks, self._by_chunk(self.row_max)))
        return out.reshape((-1,) + x.shape[1:])[: self.num_rows]

    def _padded(self, v):
        """An (n,) row vector as chunks, padding rows set to 0 (so they add 0)."""
        size = jax.tree.leaves(self.chunks)[0].shape[1]
        pad = (-self.num_rows) % size
        return jnp.pad(v, (0, pad)).reshape(-1, size)

    def rmv(self, v):
        def one(chunk):
            rows, row_max, v = chunk
            return v @ self._block(rows, row_max)

        chunks = (self.chunks, self._by_chunk(self.row_max), self._padded(v))
        return sum_chunks(one, jnp.zeros(self.num_points, v.dtype), chunks)

    def weighted_gram(self, d, *, single_precision=False, columns=None):
        def one(chunk):
            rows, row_max, d = chunk
            block = self._block(rows, row_max)
            return weighted_gram(
                block, d, single_precision=single_precision, columns=columns
            )

        if d is None:
            d = jnp.ones(self.num_rows, self.row_max.dtype)
        m = self.num_points if columns is None else columns.shape[0]
        chunks = (self.chunks, self._by_chunk(self.row_max), self._padded(d))
        return sum_chunks(one, jnp.zeros((m, m), d.dtype), chunks)

    def ratios(self, x, w):
        # One evaluation of each block for both products (`mv` then `rmv` would
        # evaluate the model twice).
        def one(total, chunk):
            rows, row_max, w = chunk
            block = self._block(rows, row_max)
            u = block @ x
            return total + (w / u) @ block, u

        chunks = (self.chunks, self._by_chunk(self.row_max), self._padded(w))
        d, u = jax.lax.scan(one, jnp.zeros(self.num_points, w.dtype), chunks)
        return d, u.reshape(-1)[: self.num_rows]

    def rmv_and_gram(self, v, d, columns, *, single_precision=False):
        scale = _gram_scale(d)

        def one(chunk):
            rows, row_max, v, d = chunk
            block = self._block(rows, row_max)
            gram = _gram_block(block[:, columns], d, scale, single_precision)
            return v @ block, gram

        s = columns.shape[0]
        chunks = (
            self.chunks,
            self._by_chunk(self.row_max),
            self._padded(v),
            self._padded(d),
        )
        init = (jnp.zeros(self.num_points, v.dtype), jnp.zeros((s, s), d.dtype))
        return sum_chunks(one, init, chunks)

    def take_rows(self, index):
        size = jax.tree.leaves(self.chunks)[0].shape[1]
        rows = jax.tree.map(
            lambda x: x.reshape((-1,) + x.shape[2:])[index], self.chunks
        )
        return RowChunkedLikelihood(
            self.log_lik_fn,
            self.params,
            split_rows(rows, min(size, index.shape[0])),
            self.row_max[index],
            index.shape[0],
            self.num_points,
        )

    def grouped_mv(self, probs, labels):
        @jax.checkpoint
        def one(chunk):
            rows, row_max, labels = chunk
            return jnp.sum(self._block(rows, row_max) * probs[labels], axis=1)

        chunks = (self.chunks, self._by_chunk(self.row_max), self._by_chunk(labels))
        return map_chunks(one, chunks).reshape(-1)[: self.num_rows]

    def grouped_mv_pullback(self, probs, labels, cotangent):
        # One block at a time: the memory of one (size, m) block. The pullback of
        # A_ik = exp(l_ik - row_max_i) is A_ik times that of l_ik, so the model's
        # own pullback runs once per block, with no derivative of exp.
        def one(chunk):
            rows, row_max, labels, cotangent, *cached = chunk
            log_lik, pullback = jax.vjp(
                lambda params: self.log_lik_fn(params, rows), self.params
            )
            block = cached[0] if cached else _shifted_likelihood(log_lik, row_max)
            weighted = block * (probs[0] if probs.shape[0] == 1 else probs[labels])
            return pullback(jnp.where(block > 0, cotangent[:, None] * weighted, 0.0))[0]

        chunks = (
            self.chunks,
            self._by_chunk(self.row_max),
            self._by_chunk(labels),
            self._padded(cotangent),
        )
        if self.blocks is not None:
            chunks = (*chunks, self.blocks)
        zeros = jax.tree.map(jnp.zeros_like, self.params)
        params = sum_chunks(one, zeros, chunks)
        cotangent_op = jax.tree.map(lambda _: None, self)
        return eqx.tree_at(
            lambda op: op.params, cotangent_op, params, is_leaf=lambda x: x is None
        )


@functools.singledispatch
def materialise(op: AbstractLikelihoodOperator) -> DenseLikelihood:
    """The operator as a `DenseLikelihood` (its (n, m) matrix built once)."""
    raise NotImplementedError(f"materialise is not registered for {type(op)}.")


@materialise.register
def _(op: DenseLikelihood) -> DenseLikelihood:
    return op


@materialise.register
def _(op: RowChunkedLikelihood) -> DenseLikelihood:
    def one(chunk):
        rows, row_max = chunk
        return op._block(rows, row_max)

    blocks = map_chunks(one, (op.chunks, op._by_chunk(op.row_max)))
    matrix = blocks.reshape(-1, op.num_points)[: op.num_rows]
    return DenseLikelihood(matrix, op.row_max)


# Rows per block of `weighted_gram`: the weighted copy of the matrix is built one
# block at a time (about 10 MB), never whole (n, k).
GRAM_ROWS = 2**15


def weighted_gram(
    matrix: Float[Array, "n k"],
    d: Float[Array, " n"] | None,
    *,
    single_precision: bool = False,
    block_rows: int = GRAM_ROWS,
    columns: Int[Array, " s"] | None = None,
) -> Float[Array, "k k"]:
    """`matrix' diag(d) matrix` for `d >= 0` (`matrix' matrix` for `d=None`);
    with `columns`, of those columns only (gathered a block of rows at a time).

    With `single_precision`, the product runs in float32 on `matrix * sqrt(d / max d)`
    (2-3x faster on CPU) and is rescaled in float64: about 1e-7 relative accuracy,
    enough for a curvature that only steers the search. The weighted copy is made
    in blocks of `block_rows` rows, so memory stays O(k^2) beyond the matrix.
    """
    if d is None:  # the plain Gram matrix, without an (n, k) weighted copy
        if columns is not None:
            matrix = matrix[:, columns]
        return jax.lax.dot_general(matrix, matrix, _ROWS)
    scale = _gram_scale(d)

    def block(rows, d_rows):
        if columns is not None:
            rows = rows[:, columns]
        return _gram_block(rows, d_rows, scale, single_precision)

    n, k = matrix.shape
    k = k if columns is None else columns.shape[0]
    full = n // block_rows
    if full <= 1:
        return block(matrix, d)

    def add(j, total):
        start = j * block_rows
        rows = jax.lax.dynamic_slice_in_dim(matrix, start, block_rows)
        return total + block(rows, jax.lax.dynamic_slice_in_dim(d, start, block_rows))

    total = jax.lax.fori_loop(0, full, add, jnp.zeros((k, k), d.dtype))
    if n % block_rows:
        total = total + block(matrix[full * block_rows :], d[full * block_rows :])
    return total


_ROWS = (((0,), (0,)), ((), ()))  # dot_general: contract the row axes


def _gram_scale(d):
    return jnp.maximum(jnp.max(d), jnp.finfo(d.dtype).tiny)


def _gram_block(rows, d_rows, scale, single_precision):
    """`rows' diag(d_rows) rows`; in float32 on `rows * sqrt(d / scale)`."""
    if not single_precision:
        return jax.lax.dot_general(rows * d_rows[:, None], rows, _ROWS)
    root = (rows * jnp.sqrt(d_rows / scale)[:, None]).astype(jnp.float32)
    return jax.lax.dot_general(root, root, _ROWS).astype(d_rows.dtype) * scale


# Rows per block of a fused pass: about 5 MB of float64 at m = 300, so that the
# block is still in cache for its second product. At (1e6, 300), `A'(w / A x)`
# took 0.30 s as two products and 0.15 s in blocks of 2048 rows (0.17 s in 512,
# 0.20 s in 8192); `A'v` with a 64-column Gram product 0.47 s and 0.31 s.
PASS_ROWS = 2048


def pass_rows(block, arrays, *, summed: int = 1, block_rows: int = PASS_ROWS):
    """One pass over the rows of `arrays` (each with leading axis n) in blocks of
    `block_rows`: `block(*rows)` returns `summed` arrays that are added over the
    blocks, then optionally one (rows,) array that is concatenated. Returns the
    sums (and the concatenation) in order."""
    n = arrays[0].shape[0]
    if n <= block_rows:
        return block(*arrays)
    full = n // block_rows
    shapes = jax.eval_shape(block, *(a[:block_rows] for a in arrays))
    init = [jnp.zeros(x.shape, x.dtype) for x in shapes[:summed]]
    rowwise = [jnp.zeros((full * block_rows,), x.dtype) for x in shapes[summed:]]

    def add(j, carry):
        totals, rows_out = carry
        start = j * block_rows
        out = block(
            *(jax.lax.dynamic_slice_in_dim(a, start, block_rows) for a in arrays)
        )
        totals = [t + o for t, o in zip(totals, out[:summed], strict=True)]
        rows_out = [
            jax.lax.dynamic_update_slice_in_dim(r, o, start, 0)
            for r, o in zip(rows_out, out[summed:], strict=True)
        ]
        return totals, rows_out

    totals, rows_out = jax.lax.fori_loop(0, full, add, (init, rowwise))
    if n % block_rows:
        out = block(*(a[full * block_rows :] for a in arrays))
        totals = [t + o for t, o in zip(totals, out[:summed], strict=True)]
        pairs = zip(rows_out, out[summed:], strict=True)
        rows_out = [jnp.concatenate([r, o]) for r, o in pairs]
    return (*totals, *rows_out)
