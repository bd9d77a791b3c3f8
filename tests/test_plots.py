"""The plots of a fit (`Results.plot_*`) and the demo's figure."""

import copy
import subprocess
import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from jax.flatten_util import ravel_pytree


plt = pytest.importorskip("matplotlib.pyplot")

import spmle  # noqa: E402
from spmle import _demo  # noqa: E402
from spmle.inference._plots import plot_mixing  # noqa: E402


N, GRID = 500, 31
PNG = b"\x89PNG\r\n\x1a\n"
HALF_CHI2_95 = 3.841458820694124 / 2


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _by_gid(artists, gid):
    found = [a for a in artists if a.get_gid() == gid]
    assert len(found) == 1, f"{gid}: {len(found)} artists"
    return found[0]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    path = tmp_path_factory.mktemp("demo") / "demo.png"
    lines = []
    out = _demo.run(n=N, grid=GRID, seed=0, out=path, show=lines.append)
    return out, "\n".join(lines)


@pytest.fixture(scope="module")
def direct(demo):
    """`(res, data, support)`: the demo's data fitted directly, with the profile
    log-likelihood set from `spmle.profile_loglik` (what `fit` is to record)."""
    _, start, data = _demo.simulate(N, 0)
    support = spmle.Grid.evenly_spaced(-6.0, 6.0, GRID)
    res = spmle.fit(start, data, support)
    params, static = eqx.partition(res.model, eqx.is_inexact_array)
    unravel = ravel_pytree(params)[1]
    atoms = "free" if res.grid_size is None else "grid"

    def profile_fn(theta):
        model = eqx.combine(unravel(jnp.asarray(theta)), static)
        return float(spmle.profile_loglik(model, data, support, atoms=atoms)[0])

    res._profile_fn = profile_fn
    return res, data, support


def _hand_made(mixing, **info) -> spmle.Results:
    """A `Results` around `mixing` with no parameters and no data."""
    empty = np.zeros((0, 0))
    return spmle.Results(
        model=None,
        params=pd.Series([], dtype=np.float64),
        cov=empty,
        cov_type="none",
        llf=0.0,
        nobs=1,
        df_mixing=0,
        hessian=empty,
        converged=True,
        optimizer_info={"status": "successful", "steps": 0, "grad_norm": 0.0, **info},
        method="by hand",
        mixing=mixing,
    )


def test_demo_writes_a_png_and_fits_as_fit_does(demo, direct):
    out, text = demo
    res, _, _ = direct
    assert out["path"].read_bytes()[:8] == PNG
    np.testing.assert_allclose(out["results"].params, res.params, rtol=0, atol=1e-10)
    assert out["results"].llf == pytest.approx(res.llf, rel=1e-12)
    assert set(out["timings"]) >= {"fit", "plot", "total"}
    assert "covered" in text and "Latent F" in text and "Log-likelihood" in text
    # The demo's own profile (its helper) peaks at the estimate too.
    curve = _by_gid(out["results"].plot_profile("loadings[0]").lines, "profile")
    x, y = curve.get_xdata(), curve.get_ydata()
    assert abs(x[np.argmax(y)] - res.params["loadings[0]"]) <= x[1] - x[0]


def test_cdf_is_the_estimated_cdf_with_the_truth(direct):
    res, _, _ = direct
    ax = res.plot_mixing(truth=(_demo.ATOMS, _demo.PROBS))
    line = _by_gid(ax.lines, "estimate-cdf")
    x = np.asarray(line.get_xdata())
    assert line.get_drawstyle() == "steps-post"
    np.testing.assert_allclose(line.get_ydata(), res.mixing.cdf(x)[0], atol=1e-14)
    assert line.get_ydata()[0] == 0 and line.get_ydata()[-1] == pytest.approx(1)
    true = _by_gid(ax.lines, "truth-cdf")
    truth = spmle.MixingDistribution(_demo.ATOMS, _demo.PROBS)
    np.testing.assert_allclose(true.get_ydata(), truth.cdf(true.get_xdata())[0])


def test_pmf_stems_carry_the_weights(direct):
    res, _, _ = direct
    ax = res.plot_mixing(kind="pmf", truth=spmle.MixingDistribution([0.0], [1.0]))
    stems = _by_gid(ax.collections, "estimate")
    heights = np.array([seg[1, 1] for seg in stems.get_segments()])
    assert heights.sum() == pytest.approx(1.0, abs=1e-8)
    np.testing.assert_allclose(_by_gid(ax.lines, "truth").get_ydata(), [1.0])
    with pytest.raises(ValueError, match="kind"):
        res.plot_mixing(kind="pdf")


def test_one_panel_per_group_or_one_axes_for_all():
    mixing = spmle.MixingDistribution([-1.0, 0.0, 2.0], [[0.2, 0.5, 0.3], [1, 0, 0]])
    axes = plot_mixing(mixing)
    assert axes.shape == (2,)
    assert [a.get_title() for a in axes] == ["group 0", "group 1"]
    np.testing.assert_allclose(
        _by_gid(axes[1].lines, "estimate-cdf").get_ydata(), [0, 1, 1, 1]
    )
    _, ax = plt.subplots()
    assert plot_mixing(mixing, ax=ax) is ax
    assert len([line for line in ax.lines if line.get_gid() == "estimate-cdf"]) == 2


def test_two_dimensional_latent_is_a_weights_map():
    support = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    res = _hand_made(spmle.MixingDistribution(support, [0.25, 0.0, 0.0, 0.75]))
    ax = res.plot_mixing(truth=(np.array([[1.0, 1.0]]), np.array([1.0])))
    weights = _by_gid(ax.collections, "weights")
    np.testing.assert_allclose(weights.get_offsets(), support[[0, 3]])
    np.testing.assert_allclose(weights.get_array(), [0.25, 0.75])
    np.testing.assert_allclose(_by_gid(ax.collections, "truth").get_offsets(), [[1, 1]])
    with pytest.raises(ValueError, match="parametric"):
        _hand_made(None).plot_mixing()


def test_profile_peaks_at_the_estimate_with_its_cutoff_and_band(direct):
    res, _, _ = direct
    name = "loadings[0]"
    ax = res.plot_profile(name, points=11, span=2.0)
    curve = _by_gid(ax.lines, "profile")
    x, y = np.asarray(curve.get_xdata()), np.asarray(curve.get_ydata())
    estimate, se = res.params[name], res.bse[name]
    np.testing.assert_allclose(x, estimate + np.linspace(-2, 2, 11) * se)
    assert abs(x[np.argmax(y)] - estimate) <= x[1] - x[0]
    assert y[5] == pytest.approx(res.llf, abs=1e-6 * abs(res.llf))
    assert np.all(y <= res.llf + 1e-6 * abs(res.llf))
    cutoff = _by_gid(ax.lines, "cutoff").get_ydata()
    np.testing.assert_allclose(cutoff, res.llf - HALF_CHI2_95, rtol=0, atol=1e-9)
    band = _by_gid(ax.patches, "wald")
    if hasattr(band, "get_width"):  # a Rectangle (matplotlib >= 3.9)
        lo, hi = band.get_x(), band.get_x() + band.get_width()
    else:
        xs = np.asarray(band.get_xy())[:, 0]
        lo, hi = xs.min(), xs.max()
    interval = res.conf_int().loc[name]
    assert (lo, hi) == pytest.approx((interval["lower"], interval["upper"]))
    with pytest.raises(ValueError, match="unknown parameter"):
        res.plot_profile("nope")
    with pytest.raises(ValueError, match="_profile_fn"):
        _hand_made(res.mixing).plot_profile("loadings[0]")


def test_convergence_needs_the_history(direct):
    res, _, _ = direct
    with pytest.raises(ValueError, match="verbose=True"):
        _hand_made(res.mixing).plot_convergence()
    history = {
        "step": [0, 1, 2],
        "objective": [3.0, 2.0, 1.5],
        "grad_norm": [1, 1e-3, 1e-9],
    }
    copied = copy.copy(res)
    copied.optimizer_info = {**res.optimizer_info, "history": history}
    ax, twin = copied.plot_convergence()
    np.testing.assert_allclose(_by_gid(ax.lines, "objective").get_ydata(), [3, 2, 1.5])
    np.testing.assert_allclose(
        _by_gid(twin.lines, "grad_norm").get_ydata(), [1, 1e-3, 1e-9]
    )
    assert twin.get_yscale() == "log"


def test_posterior_shrinkage_plot():
    model = spmle.models.NormalMeans()
    latent = jnp.where(jnp.arange(200) % 4 == 0, 2.0, 0.0)
    data = model.simulate(jax.random.key(3), latent, se=jnp.ones(200))
    res = spmle.fit(model, data)
    ax = res.plot_posterior(estimates=data["x"])
    units = _by_gid(ax.collections, "units")
    np.testing.assert_allclose(
        units.get_offsets(),
        np.column_stack([data["x"], res.posterior()["mean"]]),
    )
    diagonal = _by_gid(ax.lines, "45")
    np.testing.assert_allclose(diagonal.get_xdata(), diagonal.get_ydata())
    ticks = _by_gid(ax.collections, "atoms")
    positive = np.asarray(res.mixing.support)[np.asarray(res.mixing.probs)[0] > 1e-10]
    np.testing.assert_allclose(
        sorted(seg[0, 1] for seg in ticks.get_segments()), np.sort(positive)
    )
    with pytest.raises(ValueError, match="estimates"):
        res.plot_posterior()
    with pytest.raises(ValueError, match="200 units"):
        res.plot_posterior(estimates=np.zeros(3))


def test_without_matplotlib(monkeypatch, tmp_path):
    # spmle imports without it...
    code = (
        "import sys; sys.modules['matplotlib'] = None; import spmle; "
        "from spmle import _demo; from spmle.inference import _plots; "
        "assert spmle.Results.plot_mixing"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    # ...and a plot says how to install it.
    for name in ("matplotlib", "matplotlib.pyplot", "matplotlib.figure"):
        monkeypatch.setitem(sys.modules, name, None)
    mixing = spmle.MixingDistribution([0.0, 1.0], [0.5, 0.5])
    with pytest.raises(ImportError, match=r'pip install "spmle\[plot\]"'):
        plot_mixing(mixing)
    with pytest.raises(ImportError, match=r"spmle\[plot\]"):
        _demo.run(n=10, out=tmp_path / "never.png")
    assert not (tmp_path / "never.png").exists()
