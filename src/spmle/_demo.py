"""The `spmle demo`: the spmlex README's linear factor panel, simulated, fitted
and plotted (the estimated against the true F, a profile log-likelihood)."""

import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd


ATOMS = (-3.0, 0.0, 5.0)
PROBS = (0.3, 0.5, 0.2)
LOADINGS = (1.5, 0.3)  # lambda_2, lambda_3; lambda_1 = 1
PROFILED = "loadings[0]"


def _truth_and_start():
    from .models import LinearFactor

    truth = LinearFactor(loadings=jnp.array(LOADINGS), log_sigma=jnp.zeros(3))
    start = LinearFactor(loadings=jnp.array([1.0, 1.0]), log_sigma=jnp.zeros(3))
    return truth, start


def simulate(n: int = 2000, seed: int = 0):
    """`(truth, start, data)`: the README's design with `n` units (T = 3)."""
    truth, start = _truth_and_start()
    data = truth.simulate(jax.random.key(seed), jnp.array(ATOMS), jnp.array(PROBS), n)
    return truth, start, data


def _truth_table(res, truth) -> pd.DataFrame:
    from ._internal import flatten, split

    true = np.asarray(flatten(split(truth)[0])[0])
    interval = res.conf_int()
    covered = (interval["lower"] <= true) & (true <= interval["upper"])
    return pd.DataFrame(
        {
            "estimate": res.params,
            "SE": res.bse,
            "[95%": interval["lower"],
            "CI]": interval["upper"],
            "truth": true,
            "covered": np.where(covered, "yes", "no"),
        }
    )


def _mixing_report(res) -> str:
    mixing = res.mixing
    support = np.asarray(mixing.support)
    probs = np.asarray(mixing.probs[0])
    atoms, weights = np.asarray(ATOMS), np.asarray(PROBS)
    true_mean = float(weights @ atoms)
    true_sd = float(np.sqrt(weights @ (atoms - true_mean) ** 2))
    mean = float(mixing.mean()[0])
    sd = float(np.sqrt(max(float(mixing.var()[0]), 0.0)))
    truth = " + ".join(
        f"{p:.1f} d({a:+.1f})" for a, p in zip(atoms, weights, strict=True)
    )
    lines = [
        f"Latent F: truth {truth}",
        f"  mean {mean:+.4f} (truth {true_mean:+.4f}), "
        f"sd {sd:.4f} (truth {true_sd:.4f})",
        "  atoms with weight >= 1%:",
    ]
    order = np.argsort(support)
    for point, weight in zip(support[order], probs[order], strict=True):
        if weight >= 0.01:
            lines.append(f"    {point:+8.3f}  {weight:.4f}  {'#' * round(50 * weight)}")
    return "\n".join(lines)


def run(
    n: int = 2000,
    grid: int = 75,
    seed: int = 0,
    out="spmle-demo.png",
    show=print,
) -> dict:
    """Simulate the README's LinearFactor panel (n units, T = 3, loadings
    (1, 1.5, 0.3), unit noise, X* on -3, 0, 5 with weights 0.3, 0.5, 0.2), fit
    it on `grid` evenly spaced points on [-6, 6], print (through `show`) the
    summary, the estimates against the truth and F against its truth, and write
    a 2-panel PNG to `out` (needs matplotlib): the estimated and true CDF of X*,
    and the profile log-likelihood of `loadings[0]` with its intervals.

    Returns `{"results", "path", "timings", "data", "truth"}`, `timings` in
    seconds: `fit` (compilation included on a first call), `plot` (the profile
    evaluations and the figure) and `total`.
    """
    from .inference._plots import require_matplotlib

    require_matplotlib()  # first: fail before the fit, saying how to install it

    # spmle computes in float64; the demo opts in here only, not for its caller.
    with jax.enable_x64(True):
        return _run(n, grid, seed, out, show)


def _run(n, grid, seed, out, show) -> dict:
    from matplotlib.figure import Figure

    from . import Grid, fit

    begin = time.perf_counter()
    truth, start, data = simulate(n, seed)
    support = Grid.evenly_spaced(-6.0, 6.0, grid)

    clock = time.perf_counter()
    res = fit(start, data, support)
    fit_seconds = time.perf_counter() - clock

    show(
        f"spmle demo: the linear factor panel Y_it = lambda_t X*_i + e_it, n = {n:,}, "
        f"T = 3, seed {seed}; grid of {grid} points on [-6, 6]"
    )
    show(res.summary())
    show("Estimates against the truth (95% Wald intervals):")
    show(_truth_table(res, truth).to_string(float_format=lambda x: f"{x:.4f}"))
    show(_mixing_report(res))

    clock = time.perf_counter()
    figure = Figure(figsize=(11, 4.2), layout="constrained")
    left, right = figure.subplots(1, 2)
    res.plot_mixing(truth=(ATOMS, PROBS), ax=left)
    left.set_title("Distribution of the latent factor X*")
    res.plot_profile(PROFILED, ax=right)
    right.set_title(f"Profile log-likelihood of {PROFILED} (truth {LOADINGS[0]})")
    right.axvline(LOADINGS[0], color="black", linewidth=1, label="truth", gid="truth")
    right.legend(loc="lower center", fontsize="small")
    path = Path(out)
    figure.savefig(path, dpi=110)
    plot_seconds = time.perf_counter() - clock
    total = time.perf_counter() - begin
    show(
        f"Fit {fit_seconds:.2f} s (compilation included on a first call); "
        f"profile and plot {plot_seconds:.2f} s. Figure: {path}"
    )
    return {
        "results": res,
        "path": path,
        "timings": {"fit": fit_seconds, "plot": plot_seconds, "total": total},
        "data": data,
        "truth": truth,
    }
