"""The estimation contract: a log-likelihood in the parameters."""

import abc
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float


class AbstractProblem(eqx.Module):
    """A log-likelihood in the parameters, with per-observation contributions.

    Everything after it (the optimiser loop, the Newton polish, the bootstrap
    refits, the covariance estimators, the delta method) is the same for the
    semiparametric and the parametric path. A problem is a pytree of arrays: it
    passes through `jit` and `vmap` (e.g. over simulated data sets).
    """

    static: eqx.AbstractVar[Any]
    data: eqx.AbstractVar[dict]
    weights: eqx.AbstractVar[Float[Array, " n"]]

    def model(self, params):
        """The model with parameters `params` (a pytree of the model's arrays)."""
        return eqx.combine(params, self.static)

    @abc.abstractmethod
    def loglik(self, params, init=None) -> tuple[Float[Array, ""], Any]:
        """The total log-likelihood and auxiliary output; `init` (from
        `warm_start`) may speed up an inner optimisation, never change it."""

    def search_loglik(self, params, init=None) -> tuple[Float[Array, ""], Any]:
        """What the optimiser evaluates: `loglik`'s value and aux, with exact first
        derivatives (it needs no higher ones); `loglik` itself by default."""
        return self.loglik(params, init)

    def warm_start(self, aux):
        """The `init` argument of `loglik` near the point whose aux is `aux`;
        `aux=None` gives the placeholder for a cold start."""
        return None

    def certified_start(self, init):
        """The `init` of an evaluation that certifies its inner solution, for a
        problem whose `warm_start` trusts the previous one's (see
        `certifies_at_end`); `init` itself by default."""
        return init

    @property
    def certifies_at_end(self) -> bool:
        """True when the optimiser's steps evaluate a reduced inner problem (its
        `warm_start` trusts the previous solution's support) that `minimise`
        certifies where it stops, re-running the steps if the certificate
        changes the solution."""
        return False

    def presearch(self, init) -> tuple["AbstractProblem | None", Any]:
        """`(problem, cold)`: a cheaper problem whose optimum is a good start, run
        first by `minimise` when `cold` (a traced bool) says `init` has nothing
        to start from; `(None, False)` by default."""
        return None, False

    @abc.abstractmethod
    def contributions(self, params) -> Float[Array, " n"]:
        """`w_i log l_i(theta)` for each observation; sums to the total."""

    def with_weights(self, weights) -> "AbstractProblem":
        return eqx.tree_at(lambda p: p.weights, self, weights)

    def derivatives(self, flat, unflatten):
        """Value, gradient and Hessian of the total log-likelihood in the flat
        parameters; the Hessian one column at a time (forward over reverse), so
        that memory stays that of one gradient."""

        def total(flat):
            return self.loglik(unflatten(flat))[0]

        value, grad = jax.value_and_grad(total)(flat)
        hessian = jax.lax.map(
            lambda e: jax.jvp(jax.grad(total), (flat,), (e,))[1], jnp.eye(flat.size)
        )
        return value, grad, (hessian + hessian.T) / 2

    def newton_tol(self) -> float:
        """Newton polishing stops once the step is below this, relative to
        `1 + |theta|`: the accuracy the log-likelihood itself can resolve."""
        return 0.0

    def at_optimum(self, aux) -> "AbstractProblem":
        """The same problem for derivatives at the parameters whose `loglik` gave
        `aux`: a problem with an inner optimisation reuses its solution there."""
        return self
