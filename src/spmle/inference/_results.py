"""Results of a fit: estimates, covariance, tables; every table from `tidy()`."""

import math
from statistics import NormalDist

import jax.numpy as jnp
import numpy as np
import pandas as pd

from ._likelihood_ratio import profile_interval
from ._mixing import MixingDistribution
from ._posterior import (
    PosteriorSource,
    posterior_frame,
    posterior_log_weights,
    sample_posterior,
)


def _normal_two_sided_p(z: np.ndarray) -> np.ndarray:
    return np.vectorize(lambda t: math.erfc(abs(t) / math.sqrt(2.0)), otypes=[float])(z)


def _normal_quantile(p: float) -> float:
    # The standard library's inverse normal CDF (Wichura's AS241, ~1e-16).
    return NormalDist().inv_cdf(p)


def _describe_mixing(mixing: MixingDistribution) -> str:
    """`"3 atoms, mean 0.412, sd 1.53"` (per group when there are several)."""
    counts = (mixing.probs > 1e-10).sum(axis=1)
    if mixing.support.ndim != 1:
        return ", ".join(f"{c} atoms" for c in counts)
    parts = [
        f"{c} atoms, mean {m:.4g}, sd {np.sqrt(max(v, 0.0)):.4g}"
        for c, m, v in zip(counts, mixing.mean(), mixing.var(), strict=True)
    ]
    if len(parts) == 1:
        return parts[0]
    return "; ".join(f"group {g}: {p}" for g, p in enumerate(parts))


class Results:
    """Estimates with inference, in the statsmodels style.

    Attributes:
        params: pandas Series of estimates, named from the model's fields.
        bse, tvalues, pvalues: standard errors, z statistics, two-sided p-values.
        llf: the maximised (profile) log-likelihood, a total.
        nobs: number of observations n.
        converged: True when the outer optimiser and every inner solve converged.
        model: the fitted model (an equinox Module).
        mixing: the estimated `MixingDistribution` (None for parametric fits).
        hessian: the Hessian of `llf` in the parameters (DataFrame).
        cov_type: "hessian", "sandwich", "cluster", "bootstrap" or a registered
            estimator's name.
        cov_kwds: dict of the covariance's keywords (number of clusters, draws,
            failed refits), shown by `summary()`.
        optimizer_info: dict with the outer status, steps and gradient norm, and
            `history`: per outer step, the log-likelihood, the largest mean
            gradient entry and the inner certificate's gap (`fit(verbose=True)`
            prints them as they happen).
        bootstrap_draws: (B, k) DataFrame of the converged bootstrap refits
            (`cov_type="bootstrap"` only, else None).
        grid: the support grid's size, range and spacing, as shown by
            `summary()` (None for parametric fits).
        notes: diagnostics a user must see (e.g. a sawtooth profile on a grid),
            also shown by `summary()`.
    """

    def __init__(
        self,
        *,
        model,
        params: pd.Series,
        cov: np.ndarray,
        cov_type: str,
        cov_kwds: dict | None = None,
        llf: float,
        nobs: int,
        df_mixing: int,
        hessian: np.ndarray,
        converged: bool,
        optimizer_info: dict,
        method: str,
        mixing: MixingDistribution | None = None,
        num_groups: int = 1,
        grid_size: int | None = None,
        grid: str | None = None,
        delta=None,
        draws: np.ndarray | None = None,
        notes=(),
        posterior: PosteriorSource | None = None,
        profile=None,
        pinned=None,
    ):
        names = list(params.index)
        self.model = model
        self.params = params
        self._cov = pd.DataFrame(cov, index=names, columns=names)
        self.cov_type = cov_type
        self.cov_kwds = dict(cov_kwds or {})
        self.llf = float(llf)
        self.nobs = int(nobs)
        self.df_mixing = int(df_mixing)
        self.hessian = pd.DataFrame(hessian, index=names, columns=names)
        self.converged = bool(converged)
        self.optimizer_info = optimizer_info
        self.method = method
        self.mixing = mixing
        self.num_groups = num_groups
        self.grid_size = grid_size
        self.grid = grid
        self._delta = delta
        self.notes = list(notes)
        self._posterior = posterior
        # The profile log-likelihood at flat parameters, F re-solved (plots).
        self._profile_fn = profile
        # The log-likelihood maximised with one parameter held fixed (see
        # `spmle.estimation.PinnedProfile`): the profile intervals' objective.
        self._pinned = pinned
        self._profile_intervals = {}
        self._posterior_cache = None
        self.bootstrap_draws = (
            None if draws is None else pd.DataFrame(draws, columns=names)
        )

    def cov_params(self) -> pd.DataFrame:
        """The estimated covariance matrix of `params`."""
        return self._cov.copy()

    @property
    def bse(self) -> pd.Series:
        return pd.Series(np.sqrt(np.diag(self._cov.to_numpy())), self.params.index)

    @property
    def tvalues(self) -> pd.Series:
        return self.params / self.bse

    @property
    def pvalues(self) -> pd.Series:
        return pd.Series(
            _normal_two_sided_p(self.tvalues.to_numpy()), self.params.index
        )

    @property
    def bootstrap_bias(self) -> pd.Series:
        """The bootstrap estimate of the bias, `mean(draws) - params`."""
        return self._draws("bootstrap_bias").mean() - self.params

    def _draws(self, what: str) -> pd.DataFrame:
        if self.bootstrap_draws is None:
            raise ValueError(
                f"{what} needs bootstrap draws: fit with cov_type='bootstrap' (and a "
                "PRNG `key`)."
            )
        return self.bootstrap_draws

    def conf_int(self, alpha: float = 0.05, kind: str = "wald") -> pd.DataFrame:
        """Two-sided `1 - alpha` intervals, one row per parameter.

        `kind`:
            `"wald"`: `params +- z_{1-alpha/2} bse`, with this fit's covariance.
            `"profile"`: the likelihood-ratio interval, as R's `confint()` gives
                for a glm: the values of each parameter at which the log-likelihood,
                maximised again over the other parameters (and F), falls
                `chi2_1(1-alpha)/2` below `llf` (1.92 at 95%). It follows a
                skewed profile, and needs no standard error; each endpoint costs a
                few refits. An endpoint the profile never reaches (it flattens) is
                infinite, with a warning. Fits of `spmle.fit` and
                `spmle.fit_mle` only; it ignores `cov_type`.
            `"bias_corrected"`: the Wald interval around `params - bootstrap_bias`.
            `"basic"`: `2 params - q_{1-alpha/2}` to `2 params - q_{alpha/2}`, with
                `q` the bootstrap quantiles (it corrects for bias too).
            `"percentile"`: the bootstrap quantiles `q_{alpha/2}` to `q_{1-alpha/2}`.
        The last three need `cov_type="bootstrap"`. The semiparametric MLE of a
        noise scale can be biased by a sizeable fraction of its standard error in
        samples of a few thousand (docs/inference.md): the bias-corrected
        intervals then cover better than the Wald ones. At small n the profile
        intervals cover better than the Wald ones from the exact Hessian.

        Examples:
            >>> import jax, jax.numpy as jnp, equinox as eqx, spmle
            >>> jax.config.update("jax_enable_x64", True)
            >>> class Exponential(eqx.Module):
            ...     log_rate: jax.Array
            ...     def log_lik(self, data):
            ...         return self.log_rate - jnp.exp(self.log_rate) * data["t"]
            >>> t = jnp.array([0.3, 1.2, 0.5, 2.0, 0.8])
            >>> res = spmle.fit_mle(Exponential(jnp.array(0.0)), {"t": t})
            >>> ci = res.conf_int(kind="profile")
            >>> ci.round(4).values.tolist()
            [[-0.9847, 0.806]]
        """
        z = _normal_quantile(1 - alpha / 2)
        if kind in ("wald", "bias_corrected"):
            centre = self.params
            if kind == "bias_corrected":
                centre = self.params - self.bootstrap_bias
            return pd.DataFrame(
                {"lower": centre - z * self.bse, "upper": centre + z * self.bse}
            )
        if kind == "profile":
            return self._profile_conf_int(alpha)
        if kind not in ("basic", "percentile"):
            raise ValueError(
                f"kind={kind!r}: use 'wald', 'profile', 'bias_corrected', 'basic' or "
                "'percentile'."
            )
        draws = self._draws(f"kind={kind!r}")
        low, high = draws.quantile(alpha / 2), draws.quantile(1 - alpha / 2)
        if kind == "percentile":
            return pd.DataFrame({"lower": low, "upper": high})
        return pd.DataFrame(
            {"lower": 2 * self.params - high, "upper": 2 * self.params - low}
        )

    def _profile_conf_int(self, alpha: float) -> pd.DataFrame:
        """The likelihood-ratio intervals (`conf_int(kind="profile")`), kept per
        `alpha`: `tidy` and `summary` ask again."""
        if not 0 < alpha < 1:
            raise ValueError(f"alpha={alpha!r}: use a level in (0, 1).")
        if alpha in self._profile_intervals:
            return self._profile_intervals[alpha].copy()
        if self._pinned is None and not self.params.empty:
            raise ValueError(
                "kind='profile' needs the fit's log-likelihood, which `spmle.fit` "
                "and `spmle.fit_mle` record; this Results was built without one. "
                "Use kind='wald' here."
            )
        z = _normal_quantile(1 - alpha / 2)
        rows = [
            profile_interval(
                self._pinned,
                self._pinned.start0(),
                j,
                name,
                float(self.params.iloc[j]),
                float(self.bse.iloc[j]),
                self.llf,
                z,
                getattr(type(self.model), "edge_advice", None),
            )
            for j, name in enumerate(self.params.index)
        ]
        frame = pd.DataFrame(
            np.array(rows, dtype=float).reshape(-1, 2),
            index=self.params.index,
            columns=["lower", "upper"],
        )
        self._profile_intervals[alpha] = frame
        return frame.copy()

    @property
    def df_model(self) -> int:
        """Parameters counted by `aic`/`bic`: theta plus the free mixture weights."""
        return self.params.size + self.df_mixing

    @property
    def aic(self) -> float:
        return -2 * self.llf + 2 * self.df_model

    @property
    def bic(self) -> float:
        return -2 * self.llf + math.log(self.nobs) * self.df_model

    def tidy(self, alpha: float = 0.05, kind: str = "wald") -> pd.DataFrame:
        """One row per parameter: estimate, std. error, z, p and the interval
        (of `kind`, see `conf_int`)."""
        interval = self.conf_int(alpha, kind)
        return pd.DataFrame(
            {
                "estimate": self.params,
                "std_error": self.bse,
                "z": self.tvalues,
                "p_value": self.pvalues,
                "ci_lower": interval["lower"],
                "ci_upper": interval["upper"],
            }
        )

    def summary(self, alpha: float = 0.05, kind: str = "wald") -> str:
        """A text table with a header, built from `tidy(alpha, kind)`."""
        info = self.optimizer_info
        header = [
            ("Model", type(self.model).__name__),
            ("Method", self.method),
            ("Observations", f"{self.nobs:,}"),
            ("Log-likelihood", f"{self.llf:.6f}"),
            ("AIC / BIC", f"{self.aic:.3f} / {self.bic:.3f}"),
            ("Covariance", self._covariance_label()),
        ]
        if kind != "wald":
            header.append(("Intervals", kind.replace("_", "-")))
        if self.mixing is not None:
            header.append(("Groups", str(self.num_groups)))
            if self.grid is not None:
                header.append(("Grid", self.grid))
            header.append(("Latent F", _describe_mixing(self.mixing)))
        status = "yes" if self.converged else "NO"
        if self.params.empty:  # nothing but F: its certificate says it all
            header.append(("Converged", f"{status} (no parameters to optimise)"))
        else:
            header.append(
                (
                    "Converged",
                    f"{status} ({info['status']}, {info['steps']} steps, "
                    f"|grad| = {info['grad_norm']:.2e})",
                )
            )
        if "inner" in info:
            header.append(("Inner solves", info["inner"]))
        header += [("Note", note) for note in self.notes]
        width = max(len(k) for k, _ in header)
        lines = [f"{k:<{width}}  {v}" for k, v in header]
        table = self.tidy(alpha, kind)
        level = f"{100 * (1 - alpha):g}%"
        table.columns = ["coef", "std err", "z", "P>|z|", f"[{level}", "CI]"]
        body = table.to_string(float_format=lambda x: f"{x:.6g}")
        if table.empty:
            body = "no parameters: the fit is the NPMLE of F (see `mixing`)"
        rule = "=" * max(len(body.splitlines()[0]), max(len(line) for line in lines))
        return "\n".join([rule, *lines, rule, body, rule])

    def _covariance_label(self) -> str:
        if not self.cov_kwds:
            return self.cov_type
        shown = ", ".join(f"{k} = {v}" for k, v in self.cov_kwds.items())
        return f"{self.cov_type} ({shown})"

    def __repr__(self) -> str:
        return self.summary()

    def delta_method(self, fn, names: list[str] | None = None) -> pd.DataFrame:
        """Estimate and standard error of `fn(model, mixing)` by the delta method.

        `fn` takes the fitted model and the estimated F, a `MixingDistribution` of
        JAX arrays (`mixing.support` (m,) or (m, d), `mixing.probs` (G, m),
        `mixing.mean()`, `mixing.var()`, ...), and returns a scalar or a (k,)
        array (JAX code, differentiable). The standard error accounts for the
        estimation of theta (with this fit's covariance) and of F (through the
        influence of each observation on the optimal weights and, with free
        atoms, on the atoms' locations). A parametric fit passes `mixing=None`;
        e.g. `res.delta_method(lambda model, mixing: mixing.var()[0])`.
        """
        if self._delta is None:
            raise ValueError("this fit has no delta method.")
        estimate, cov = self._delta(fn)
        estimate = np.atleast_1d(estimate)
        se = np.sqrt(np.diag(np.atleast_2d(cov)))
        index = names or [f"fn[{i}]" for i in range(estimate.size)]
        z = _normal_quantile(0.975)
        return pd.DataFrame(
            {
                "estimate": estimate,
                "std_error": se,
                "ci_lower": estimate - z * se,
                "ci_upper": estimate + z * se,
            },
            index=index,
        )

    def _posterior_parts(self):
        """`(support, log_weights (n_fit, K))` on the support points with
        positive weight in some group (the others have posterior weight 0)."""
        if self._posterior is None or self.mixing is None:
            raise ValueError(
                "posteriors need a semiparametric fit (`spmle.fit`); for a bare "
                "`npmle` use `spmle.MixingDistribution(grid, probs).posterior("
                "log_lik)`."
            )
        if self._posterior_cache is None:
            keep = np.asarray(self.mixing.probs).max(axis=0) > 0
            support = np.asarray(self.mixing.support)[keep]
            log_lik = self._posterior.log_lik(support)
            log_weights = posterior_log_weights(
                log_lik, np.asarray(self.mixing.probs)[:, keep], self._posterior.labels
            )
            self._posterior_cache = keep, support, log_weights
        return self._posterior_cache

    def posterior_weights(self) -> np.ndarray:
        """(n, m) each observation's posterior weights on `mixing.support`, in
        input order (compressed rows expanded).

        Examples:
            >>> import jax, jax.numpy as jnp, spmle
            >>> jax.config.update("jax_enable_x64", True)
            >>> model = spmle.models.NormalMeans()
            >>> latent = jnp.where(jnp.arange(300) % 3 == 0, 2.0, 0.0)
            >>> data = model.simulate(jax.random.key(1), latent, se=jnp.ones(300))
            >>> res = spmle.fit(model, data)
            >>> res.posterior_weights().shape == (300, res.mixing.support.shape[0])
            True
            >>> post = res.posterior(level=0.9)
            >>> list(post.columns), len(post)
            (['mean', 'sd', 'lower', 'upper', 'lfsr'], 300)
            >>> res.sample_posterior(jax.random.key(0), 50).shape
            (300, 50)
        """
        keep, _, log_weights = self._posterior_parts()
        weights = np.zeros((log_weights.shape[0], keep.size))
        weights[:, keep] = np.exp(log_weights)
        return self._posterior.expand(weights)

    def posterior(self, level: float = 0.95) -> pd.DataFrame:
        """Empirical Bayes summaries, one row per observation in input order:
        posterior `mean` and `sd` of its latent value, the equal-tailed credible
        interval `lower`, `upper` at `level` (points of F's support), and `lfsr`,
        the local false sign rate, where the model's latent has a meaningful sign
        (`NormalMeans`). For a d-dimensional latent, columns per coordinate."""
        _, support, log_weights = self._posterior_parts()
        signed = bool(getattr(type(self.model), "signed_latent", False))
        frame = posterior_frame(jnp.exp(log_weights), support, level, signed)
        if self._posterior.inverse is not None:
            frame = frame.iloc[self._posterior.inverse].reset_index(drop=True)
        return frame

    def sample_posterior(self, key, draws: int) -> np.ndarray:
        """(n, draws) (or (n, draws, d)) draws of each observation's latent
        value from its posterior, in input order, with the PRNG `key`."""
        _, support, log_weights = self._posterior_parts()
        # Expanded first: identical rows are separate units with separate draws.
        log_weights = self._posterior.expand(log_weights)
        return sample_posterior(key, log_weights, int(draws), support)

    def plot_mixing(self, kind: str = "cdf", truth=None, ax=None):
        """Draw the estimated F (one panel per group): its CDF (`kind="cdf"`) or
        its atoms (`"pmf"`); a 2-D latent as a map of the weights. `truth`: an
        optional `(atoms, probs)` pair or `MixingDistribution` drawn over it.
        Returns the Axes (an array of them for several groups). Needs
        matplotlib (`pip install "spmle[plot]"`)."""
        from ._plots import plot_mixing

        return plot_mixing(self.mixing, kind=kind, truth=truth, ax=ax)

    def plot_profile(self, name: str, *, points: int = 21, span: float = 3.0, ax=None):
        """Draw the profile log-likelihood along the parameter `name` over
        `estimate +- span * SE` (the other parameters at their estimates, F
        re-solved at each of `points` values), the 95% likelihood-ratio cut-off
        `llf - 1.92` and the Wald interval as a band. Returns the Axes."""
        from ._plots import plot_profile

        return plot_profile(self, name, points=points, span=span, ax=ax)

    def plot_convergence(self, ax=None):
        """Draw the objective and the gradient norm (log scale) per optimiser
        step, from `optimizer_info["history"]` (a fit with `verbose=True`).
        Returns the two Axes (`ax` and its twin)."""
        from ._plots import plot_convergence

        return plot_convergence(self, ax=ax)

    def plot_posterior(self, ax=None, *, estimates=None):
        """The empirical Bayes shrinkage plot: each unit's raw `estimates` (n,)
        (required; e.g. `data["x"]` for NormalMeans) against its posterior mean,
        the 45-degree line and the prior's atoms. Returns the Axes."""
        from ._plots import plot_posterior

        return plot_posterior(self, estimates, ax=ax)
