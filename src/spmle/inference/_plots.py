"""Plots of a fit: the estimated F, a profile log-likelihood, the optimiser's
progress and empirical Bayes shrinkage (the `Results.plot_*` methods).

matplotlib is optional (`pip install "spmle[plot]"`) and imported only when a
plot is drawn. Nothing here changes matplotlib's global state: a function draws
on the `ax` it is given, else on a new figure from `matplotlib.pyplot.subplots`.
"""

import numpy as np

from ._mixing import MixingDistribution


# z_{0.975}: z^2 / 2 = 1.92 is the 95% likelihood-ratio drop (chi-square(1) / 2).
_NORMAL_975 = 1.959963984540054


_MISSING = (
    'spmle\'s plots need matplotlib: pip install "spmle[plot]" (or pip install '
    "matplotlib)."
)


def require_matplotlib():
    """`matplotlib.figure`, or an ImportError that says how to install it."""
    try:
        import matplotlib.figure
    except ImportError as error:
        raise ImportError(_MISSING) from error
    return matplotlib.figure


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ImportError(_MISSING) from error
    return plt


def _axes(ax, nrows: int = 1, ncols: int = 1, **kwargs):
    """`ax` as given, else new axes (an array of them when several)."""
    plt = _pyplot()
    if ax is not None:
        return ax
    _, new = plt.subplots(nrows, ncols, squeeze=ncols * nrows == 1, **kwargs)
    return new if ncols * nrows == 1 else new.reshape(-1)


def _as_mixing(value, what: str) -> MixingDistribution:
    if isinstance(value, MixingDistribution):
        support, probs = value.support, value.probs
    else:
        try:
            support, probs = value
        except (TypeError, ValueError):
            raise TypeError(
                f"{what} must be a MixingDistribution or an (atoms, probs) pair; "
                f"got {type(value).__name__}."
            ) from None
    return MixingDistribution(np.asarray(support, float), np.asarray(probs, float))


def _group_axes(ax, num_groups: int):
    """One Axes per group: new panels, the given array of them, or the one
    given Axes for every group."""
    if ax is None:
        axes = _axes(None, 1, num_groups, figsize=(4.5 * num_groups, 3.5))
        return np.atleast_1d(axes), True
    axes = np.atleast_1d(np.asarray(ax, dtype=object)).reshape(-1)
    if axes.size == 1:
        return np.repeat(axes, num_groups), False
    if axes.size != num_groups:
        raise ValueError(f"ax: give one Axes or {num_groups} (one per group).")
    return axes, True


def plot_mixing(mixing, kind: str = "cdf", truth=None, ax=None):
    """Draw the estimated mixing distribution F, one panel per group.

    Args:
        mixing: a `MixingDistribution` (or a `Results`, whose `mixing` is drawn).
        kind: `"cdf"` (a step function) or `"pmf"` (stems at the atoms with
            positive weight). A two-dimensional latent is drawn as a map of the
            weights whatever `kind` (support points coloured and sized by weight).
        truth: optional true distribution, a `MixingDistribution` or an
            `(atoms, probs)` pair (probs (k,) for every group or (G, k)), drawn
            dashed (CDF), as crosses (pmf) or as red crosses (2-D).
        ax: an Axes (every group on it), or one Axes per group; None draws on a
            new figure.

    Returns:
        The Axes, or an array of Axes when there are several groups.
    """
    if hasattr(mixing, "mixing") and not isinstance(mixing, MixingDistribution):
        mixing = mixing.mixing
    if mixing is None:
        raise ValueError("no mixing distribution: this is a parametric fit.")
    if kind not in ("cdf", "pmf"):
        raise ValueError(f"kind={kind!r}: use 'cdf' or 'pmf'.")
    mixing = _as_mixing(mixing, "mixing")
    true = None if truth is None else _as_mixing(truth, "truth")
    num_groups = mixing.num_groups
    if true is not None and true.num_groups not in (1, num_groups):
        raise ValueError(
            f"truth has {true.num_groups} groups; the estimate has {num_groups}."
        )
    axes, own_panels = _group_axes(ax, num_groups)
    if mixing.support.ndim == 2 and mixing.support.shape[1] == 2:
        draw = _draw_weights_map
    elif mixing.support.ndim == 1:
        draw = _draw_cdf if kind == "cdf" else _draw_pmf
    else:
        raise ValueError(
            f"plot_mixing draws 1-D and 2-D latents; this one has support of "
            f"shape {mixing.support.shape}."
        )
    for g, panel in enumerate(axes):
        true_g = None
        if true is not None:
            true_g = (true.support, true.probs[min(g, true.num_groups - 1)])
        label = f"group {g}" if num_groups > 1 and not own_panels else None
        draw(panel, mixing, g, true_g, label)
        if num_groups > 1 and own_panels:
            panel.set_title(f"group {g}")
        if panel.get_legend_handles_labels()[0]:
            panel.legend(loc="best", fontsize="small")
    if ax is not None:
        return ax
    return axes[0] if num_groups == 1 else axes


def _positive(probs: np.ndarray) -> np.ndarray:
    return probs > 1e-10


def _draw_cdf(ax, mixing: MixingDistribution, g: int, truth, label):
    support = np.asarray(mixing.support)
    points = [support]
    if truth is not None:
        points.append(np.asarray(truth[0], float))
    lo = min(p.min() for p in points)
    hi = max(p.max() for p in points)
    margin = 0.05 * (hi - lo) if hi > lo else 1.0
    x = np.unique(np.concatenate([support[_positive(mixing.probs[g])], [lo, hi]]))
    x = np.concatenate([[lo - margin], x, [hi + margin]])
    name = "estimate" if label is None else f"estimate ({label})"
    ax.step(x, mixing.cdf(x)[g], where="post", label=name, gid="estimate-cdf")
    if truth is not None:
        atoms, probs = truth
        true = MixingDistribution(np.asarray(atoms, float), np.asarray(probs, float))
        xt = np.concatenate([[lo - margin], np.sort(true.support), [hi + margin]])
        ax.step(
            xt,
            true.cdf(xt)[0],
            where="post",
            linestyle="--",
            color="black",
            label="truth",
            gid="truth-cdf",
        )
    ax.set_xlabel("latent v")
    ax.set_ylabel("F(v)")
    ax.set_ylim(-0.02, 1.02)


def _draw_pmf(ax, mixing: MixingDistribution, g: int, truth, label):
    probs = np.asarray(mixing.probs[g])
    keep = _positive(probs)
    name = "estimate" if label is None else f"estimate ({label})"
    ax.vlines(
        np.asarray(mixing.support)[keep], 0, probs[keep], label=name, gid="estimate"
    )
    ax.plot(
        np.asarray(mixing.support)[keep], probs[keep], "o", color="C0", markersize=4
    )
    if truth is not None:
        atoms, true_probs = (np.asarray(a, float) for a in truth)
        ax.plot(
            atoms,
            true_probs,
            "x",
            color="black",
            markersize=8,
            label="truth",
            gid="truth",
        )
    ax.set_xlabel("latent v")
    ax.set_ylabel("weight")
    ax.set_ylim(bottom=0)


def _draw_weights_map(ax, mixing: MixingDistribution, g: int, truth, label):
    support = np.asarray(mixing.support)
    probs = np.asarray(mixing.probs[g])
    keep = _positive(probs)
    ax.scatter(support[:, 0], support[:, 1], s=2, color="0.8", gid="support")
    sizes = 20 + 300 * probs[keep] / probs[keep].max()
    points = ax.scatter(
        support[keep, 0],
        support[keep, 1],
        c=probs[keep],
        s=sizes,
        cmap="viridis",
        edgecolors="black",
        linewidths=0.5,
        label="estimate" if label is None else f"estimate ({label})",
        gid="weights",
    )
    ax.figure.colorbar(points, ax=ax, label="weight")
    if truth is not None:
        atoms = np.asarray(truth[0], float).reshape(-1, 2)
        ax.scatter(
            atoms[:, 0],
            atoms[:, 1],
            marker="x",
            color="red",
            s=60,
            label="truth",
            gid="truth",
        )
    ax.set_xlabel("latent v[0]")
    ax.set_ylabel("latent v[1]")


def profile_function(
    model, data, support=None, *, groups=None, weights=None, atoms: str = "grid"
):
    """`theta (k,) -> float`: the profile log-likelihood at flat parameters
    (ordered as `Results.params`), F re-solved at each call by
    `spmle.profile_loglik` on `data` and `support`, with the structure of
    `model`. NaN where an inner solve is not certified.

    What `Results.plot_profile` evaluates, as `results._profile_fn`; e.g.
    `res._profile_fn = profile_function(res.model, data, grid)` (with
    `atoms="free"` for a fit with free atoms)."""
    import equinox as eqx
    import jax.numpy as jnp

    from .._internal import flatten, split
    from ..profile import profile_loglik

    params, static = split(model)
    unflatten = flatten(params)[1]

    def fn(theta) -> float:
        candidate = eqx.combine(unflatten(jnp.asarray(theta, jnp.float64)), static)
        value, info = profile_loglik(
            candidate,
            data,
            support,
            groups=groups,
            weights=weights,
            throw=False,
            atoms=atoms,
        )
        return float(value) if bool(info.converged) else float("nan")

    return fn


def plot_profile(
    results,
    name: str,
    *,
    points: int = 21,
    span: float = 3.0,
    alpha: float = 0.05,
    ax=None,
):
    """The profile log-likelihood along one parameter, the others held at their
    estimates and F re-solved at every point, over `estimate +- span * SE`
    (`points` values; an odd number includes the estimate), with the
    likelihood-ratio cut-off `llf - chi2_1(1 - alpha) / 2` (1.92 at 95%) and the
    Wald interval of `conf_int(alpha)` as a band.

    Needs `results._profile_fn` (see `profile_function`). Returns the Axes.
    """
    fn = getattr(results, "_profile_fn", None)
    if fn is None:
        raise ValueError(
            "this fit does not record its profile log-likelihood: set "
            "`res._profile_fn = spmle.inference._plots.profile_function(res.model, "
            "data, support)` with the data and support of the fit."
        )
    names = list(results.params.index)
    if name not in names:
        raise ValueError(f"unknown parameter {name!r}; the parameters are {names}.")
    j = names.index(name)
    theta = results.params.to_numpy(dtype=float)
    estimate = theta[j]
    se = float(results.bse.iloc[j])
    if not (np.isfinite(se) and se > 0):
        se = 0.1 * (1.0 + abs(estimate))  # no usable SE: a span around the estimate
    values = estimate + np.linspace(-span, span, int(points)) * se
    loglik = []
    for value in values:
        candidate = theta.copy()
        candidate[j] = value
        loglik.append(float(fn(candidate)))
    loglik = np.asarray(loglik)
    z = _NORMAL_975 if alpha == 0.05 else _quantile(1 - alpha / 2)
    cutoff = results.llf - z**2 / 2
    interval = results.conf_int(alpha).loc[name]

    ax = _axes(ax)
    level = f"{100 * (1 - alpha):g}%"
    ax.axvspan(
        interval["lower"],
        interval["upper"],
        color="C0",
        alpha=0.15,
        label=f"{level} Wald interval",
        gid="wald",
    )
    ax.plot(
        values, loglik, "-o", color="C0", markersize=3, label="profile", gid="profile"
    )
    ax.axhline(
        cutoff,
        color="C3",
        linestyle="--",
        label=f"llf - {z**2 / 2:.2f} ({level} LR cut-off)",
        gid="cutoff",
    )
    ax.axvline(estimate, color="0.4", linestyle=":", gid="estimate")
    ax.set_xlabel(name)
    ax.set_ylabel("profile log-likelihood")
    ax.ticklabel_format(axis="y", useOffset=False)
    ax.legend(loc="lower center", fontsize="small")
    return ax


def _quantile(p: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(p)


def plot_convergence(results, ax=None):
    """The objective and the gradient norm (log scale, right axis) per outer
    step, from `results.optimizer_info["history"]` (`{"step", "objective",
    "grad_norm"}` lists; recorded by a fit with `verbose=True`).

    Returns an array of the two Axes: `ax` and its twin."""
    history = results.optimizer_info.get("history")
    if not history:
        raise ValueError(
            "this fit has no optimiser history: fit with verbose=True to record "
            "it (optimizer_info['history'])."
        )
    step = np.asarray(history["step"])
    objective = np.asarray(history["objective"], float)
    grad_norm = np.asarray(history["grad_norm"], float)
    ax = _axes(ax)
    ax.plot(step, objective, "-o", color="C0", markersize=3, gid="objective")
    ax.set_xlabel("step")
    ax.set_ylabel("objective", color="C0")
    twin = ax.twinx()
    twin.plot(step, grad_norm, "-s", color="C1", markersize=3, gid="grad_norm")
    twin.set_yscale("log")
    twin.set_ylabel("gradient norm", color="C1")
    return np.array([ax, twin], dtype=object)


def plot_posterior(results, estimates, ax=None):
    """The shrinkage plot of empirical Bayes: each unit's raw estimate (x)
    against its posterior mean (y), the 45-degree line, and the atoms of the
    estimated prior F as ticks on the left edge (thicker for more weight).

    `estimates`: (n,) the units' raw estimates in input order (for
    `NormalMeans`, `data["x"]`). Returns the Axes."""
    if estimates is None:
        raise ValueError(
            "plot_posterior needs `estimates`, the units' raw estimates (n,), e.g. "
            "`estimates=data['x']` for NormalMeans."
        )
    frame = results.posterior()
    if "mean" not in frame.columns:
        raise ValueError("plot_posterior draws one-dimensional latents.")
    mean = frame["mean"].to_numpy()
    estimates = np.asarray(estimates, float).reshape(-1)
    if estimates.shape != mean.shape:
        raise ValueError(
            f"estimates has {estimates.size} values; the fit has {mean.size} units."
        )
    ax = _axes(ax)
    ax.scatter(estimates, mean, s=8, alpha=0.5, label="units", gid="units")
    lo = min(estimates.min(), mean.min())
    hi = max(estimates.max(), mean.max())
    ax.plot([lo, hi], [lo, hi], color="0.4", linestyle="--", label="y = x", gid="45")
    mixing = results.mixing
    weight = np.asarray(mixing.probs).max(axis=0)
    keep = _positive(weight)
    atoms = np.asarray(mixing.support)[keep]
    ax.hlines(
        atoms,
        0.0,
        0.04,
        transform=ax.get_yaxis_transform(),
        colors="C3",
        linewidths=1 + 5 * weight[keep] / weight[keep].max(),
        label="prior atoms",
        gid="atoms",
    )
    ax.set_xlabel("raw estimate")
    ax.set_ylabel("posterior mean")
    ax.legend(loc="upper left", fontsize="small")
    return ax
