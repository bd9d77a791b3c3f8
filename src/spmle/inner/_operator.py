"""Access to the likelihood matrix through three products.

The NPMLE solver touches the row-shifted likelihood matrix
`A_ik = exp(l_ik - max_k l_ik)` (every row has maximum 1) only through `A x`,
`A' v` and `A' diag(d) A`. Keeping it behind this interface lets a chunked or
sharded matrix replace the dense one without touching the solver.
"""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float


class AbstractLikelihoodOperator(eqx.Module):
    """The (n, m) row-shifted likelihood matrix `A`, seen through its products."""

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
        self, d: Float[Array, " n"], *, single_precision: bool = False
    ) -> Float[Array, "m m"]:
        """`A' diag(d) A` for `d >= 0` (`A'A` for `d=None`); optionally in float32."""


class DenseLikelihood(AbstractLikelihoodOperator):
    """`A` held as a dense (n, m) array.

    Example:
        >>> import jax, jax.numpy as jnp, spmle
        >>> jax.config.update("jax_enable_x64", True)
        >>> log_lik = jnp.log(jnp.array([[0.5, 0.25], [0.1, 0.4]]))
        >>> op, row_max = spmle.DenseLikelihood.from_log_lik(log_lik)
        >>> op.mv(jnp.array([0.5, 0.5]))  # (n,) mixture likelihoods / exp(row_max)
        Array([0.75 , 0.625], dtype=float64)
    """

    matrix: Float[Array, "n m"]

    @classmethod
    def from_log_lik(
        cls, log_lik: Float[Array, "n m"]
    ) -> tuple["DenseLikelihood", Float[Array, " n"]]:
        """Row-shift a log-likelihood matrix; return the operator and row maxima."""
        row_max = jax.lax.stop_gradient(jnp.max(log_lik, axis=1))
        return cls(jnp.exp(log_lik - row_max[:, None])), row_max

    @property
    def shape(self) -> tuple[int, int]:
        return self.matrix.shape

    def mv(self, x):
        return self.matrix @ x

    def rmv(self, v):
        # `v @ A` keeps the contiguous layout; XLA CPU is ~10x slower on `A.T @ v`.
        return v @ self.matrix

    def weighted_gram(self, d, *, single_precision=False):
        return weighted_gram(self.matrix, d, single_precision=single_precision)


# Rows per block of `weighted_gram`: the weighted copy of the matrix is built one
# block at a time (about 10 MB), never whole (n, k).
_GRAM_ROWS = 2**15


def weighted_gram(
    matrix: Float[Array, "n k"],
    d: Float[Array, " n"],
    *,
    single_precision: bool = False,
) -> Float[Array, "k k"]:
    """`matrix' diag(d) matrix` for `d >= 0` (`matrix' matrix` for `d=None`).

    With `single_precision`, the product runs in float32 on `matrix * sqrt(d / max d)`
    (2-3x faster on CPU) and is rescaled in float64: about 1e-7 relative accuracy,
    enough for a curvature that only steers the search. The weighted copy is made
    in blocks of rows, so memory stays O(k^2) beyond the matrix itself.
    """
    contract = (((0,), (0,)), ((), ()))
    if d is None:  # the plain Gram matrix, without an (n, k) weighted copy
        return jax.lax.dot_general(matrix, matrix, contract)
    scale = jnp.maximum(jnp.max(d), jnp.finfo(d.dtype).tiny)

    def block(rows, d_rows):
        if not single_precision:
            return jax.lax.dot_general(rows * d_rows[:, None], rows, contract)
        root = (rows * jnp.sqrt(d_rows / scale)[:, None]).astype(jnp.float32)
        return jax.lax.dot_general(root, root, contract).astype(d.dtype) * scale

    n, k = matrix.shape
    full = n // _GRAM_ROWS
    if full <= 1:
        return block(matrix, d)

    def add(j, total):
        start = j * _GRAM_ROWS
        rows = jax.lax.dynamic_slice_in_dim(matrix, start, _GRAM_ROWS)
        return total + block(rows, jax.lax.dynamic_slice_in_dim(d, start, _GRAM_ROWS))

    total = jax.lax.fori_loop(0, full, add, jnp.zeros((k, k), d.dtype))
    if n % _GRAM_ROWS:
        total = total + block(matrix[full * _GRAM_ROWS :], d[full * _GRAM_ROWS :])
    return total
