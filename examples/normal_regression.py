"""Normal linear regression by maximum likelihood, checked five ways.

    y = X b + e,  X ~ U(0, 1) of shape (1000, 2),  b = (1, 2),  e ~ N(0, 1.5^2),

with parameters (b1, b2, log sigma). Prints the estimates from the closed form,
spmle's `fit_mle`, statsmodels' GenericLikelihoodModel and (when torch is
installed) PyTorch's LBFGS, then the 3x3 Hessians of the log-likelihood.

At the MLE the observed information of (b, log sigma) is

    [[X'X / sigma^2, 0], [0, 2n]].

The (log sigma, log sigma) entry is 2n: d/d(log s) of -n log s - RSS/(2 s^2) is
-n + RSS/s^2, and its derivative -2 RSS/s^2 equals -2n at s^2 = RSS/n. A widely
copied worked version of this example prints n there, which is wrong.

Run: python examples/normal_regression.py
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

import spmle


class NormalRegression(eqx.Module):
    """`y ~ N(X b, sigma^2)`; parameters `b` (2,) and `log_sigma`."""

    b: jax.Array
    log_sigma: jax.Array

    def log_lik(self, data):
        sigma = jnp.exp(self.log_sigma)
        return jax.scipy.stats.norm.logpdf(data["y"], data["X"] @ self.b, sigma)


def simulate():
    np.random.seed(123)  # noqa: NPY002  (the seed example as specified)
    X = np.random.uniform(0, 1, size=(1000, 2))  # noqa: NPY002
    y = X @ np.array([1.0, 2.0]) + np.random.normal(0, 1.5, size=1000)  # noqa: NPY002
    return X, y


def closed_form(X, y):
    b = np.linalg.solve(X.T @ X, X.T @ y)
    sigma2 = np.sum((y - X @ b) ** 2) / len(y)
    hessian = np.zeros((3, 3))
    hessian[:2, :2] = -X.T @ X / sigma2
    hessian[2, 2] = -2 * len(y)
    return np.r_[b, 0.5 * np.log(sigma2)], hessian


def with_statsmodels(X, y):
    from statsmodels.base.model import GenericLikelihoodModel

    class Normal(GenericLikelihoodModel):
        def loglikeobs(self, params):
            b, log_sigma = params[:2], params[2]
            resid = self.endog - self.exog @ b
            return (
                -0.5 * np.log(2 * np.pi)
                - log_sigma
                - 0.5 * resid**2 / np.exp(2 * log_sigma)
            )

    model = Normal(y, X)
    fitted = model.fit(
        start_params=np.zeros(3), method="bfgs", maxiter=500, gtol=1e-10, disp=False
    )
    return np.asarray(fitted.params), model.hessian(fitted.params)


def with_torch(X, y):
    import torch

    torch.set_default_dtype(torch.float64)
    Xt, yt = torch.tensor(X), torch.tensor(y)
    theta = torch.zeros(3, requires_grad=True)

    def loglik(theta):
        resid = yt - Xt @ theta[:2]
        return torch.sum(
            -0.5 * np.log(2 * np.pi)
            - theta[2]
            - 0.5 * resid**2 * torch.exp(-2 * theta[2])
        )

    optimizer = torch.optim.LBFGS(
        [theta],
        max_iter=500,
        tolerance_grad=1e-12,
        tolerance_change=1e-15,
        line_search_fn="strong_wolfe",
    )

    def closure():
        optimizer.zero_grad()
        loss = -loglik(theta)
        loss.backward()
        return loss

    optimizer.step(closure)
    hessian = torch.autograd.functional.hessian(loglik, theta.detach())
    return theta.detach().numpy(), hessian.numpy()


def main():
    jax.config.update("jax_enable_x64", True)
    X, y = simulate()
    names = ["b1", "b2", "log_sigma"]
    truth = np.array([1.0, 2.0, np.log(1.5)])
    exact, exact_hessian = closed_form(X, y)
    start = NormalRegression(jnp.zeros(2), jnp.array(0.0))
    res = spmle.fit_mle(start, {"X": X, "y": y})

    estimates = {"true": truth, "closed form": exact, "spmle": res.params.to_numpy()}
    hessians = {"closed form": exact_hessian, "spmle": res.hessian.to_numpy()}
    for name, runner in (
        ("statsmodels", with_statsmodels),
        ("torch LBFGS", with_torch),
    ):
        try:
            estimates[name], hessians[name] = runner(X, y)
        except ImportError:
            print(f"({name} is not installed: its column is left out)")

    pd.set_option("display.float_format", lambda v: f"{v:.8f}")
    print("Estimates")
    print(pd.DataFrame(estimates, index=names))
    print(
        "\nStandard errors: spmle",
        res.bse.to_numpy().round(6),
        " closed form",
        np.sqrt(np.diag(np.linalg.inv(-exact_hessian))).round(6),
    )
    for name, hessian in hessians.items():
        print(f"\nHessian of the log-likelihood at the MLE ({name})")
        print(pd.DataFrame(hessian, index=names, columns=names))
    print("\n" + res.summary())
    return estimates, hessians, res


if __name__ == "__main__":
    main()
