#!/usr/bin/env python
"""Grid against free atoms: the bias of theta in standard errors, the time, and
the coverage of 95% intervals.

Run on demand (not a test):

    python benchmarks/grid_bias.py linear [--n 1e4 1e5 1e6] [--m 31 75 121]
        [--reps 20] [--reps-large 1]
    python benchmarks/grid_bias.py fabric [--reps 200]
    python benchmarks/grid_bias.py slopes [--n 1e3 1e4] [--reps 10]

`linear`: the spmlex README design (LinearFactor, T = 3, X* on {-3, 0, 5} with
weights (0.3, 0.5, 0.2), loadings (1.5, 0.3), log sigma (0, 0.2, -0.3)), fitted
on `m` evenly spaced points on [-6, 6] (on 31 and 75 points -3 and 5 are off the
grid; on 121 they are on it), once with F on the grid and once with free atoms
started there. Each fit is the public seam of `spmle.fit` (`ProfileProblem`,
`minimise`, the exact Hessian at the estimate), compiled once per (n, m, atoms)
and timed warm. Per parameter: the mean of `(estimate - truth) / SE` over the
replications (a bias that stays while SE shrinks like 1/sqrt(n) grows in these
units), its Monte Carlo standard error, and the mean fit time. `--reps-large`
replications at n >= 1e6.

`fabric`: Aitkin's fabric-faults design (32 rolls of tests/data/fabric.csv,
`faults ~ Poisson(exp(v + beta log length))`, the covariate not centred) with
the truth at the free-atom estimate (beta 0.7991, v on {-3.128, -2.362} with
weights (0.797, 0.203)); grid `arange(-5, -0.95, 0.1)`. Coverage of the Wald
interval from the exact Hessian, grid against free atoms. Then the same data
through `spmle.fit` on a range wide enough for the profile (`arange(-12, 4.05,
0.1)`: F's atoms move by -6.3 per unit of beta, and the narrow range cuts the
profile inside the interval), grid and free atoms: coverage of the Wald and of
the likelihood-ratio interval (`conf_int(kind="profile")`), their median
widths, and how often the profile reached the range's edge.

`slopes`: random intercepts and slopes (RandomSlopes, T = 5, z and one covariate
standard normal, sigma 0.7, beta 0.5, (a, b) on three atoms off the grid:
(-1.03, 0.47), (0.91, -0.62), (0.2, 1.13) with weights (0.4, 0.35, 0.25)), fitted
on the 13 x 13 product grid over [-3, 3]^2 (m = 169), F on the grid and free
atoms started there; the table of `linear` for log_sigma and beta[0].
"""

import argparse
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx


HERE = pathlib.Path(__file__).parent
LINEAR_TRUTH = {"loadings": [1.5, 0.3], "log_sigma": [0.0, 0.2, -0.3]}
LINEAR_ATOMS, LINEAR_WEIGHTS = [-3.0, 0.0, 5.0], [0.3, 0.5, 0.2]
NAMES = ["loadings[0]", "loadings[1]", "log_sigma[0]", "log_sigma[1]", "log_sigma[2]"]
FABRIC_BETA = 0.7991385326222606
FABRIC_ATOMS = [-3.1280732192570992, -2.3621347396246826]
FABRIC_WEIGHTS = [0.7973733968055908, 0.20262660319440917]
SLOPES_ATOMS = np.array([[-1.03, 0.47], [0.91, -0.62], [0.2, 1.13]])
SLOPES_WEIGHTS = [0.4, 0.35, 0.25]


def _fitter(start, support, atoms):
    """A compiled `data -> (flat estimate, SE, converged)` for one shape."""
    from spmle import estimation

    params0 = estimation.parameters(start)
    optimizer = estimation.default_optimizer()

    @jax.jit
    def fit(data):
        problem = estimation.ProfileProblem.build(start, data, support, atoms=atoms)
        out = estimation.minimise(problem, params0, optimizer=optimizer, max_steps=500)
        flat, unflatten = estimation.flatten(out.params)
        _, _, hessian = estimation.derivatives(
            problem.at_optimum(out.aux), flat, unflatten
        )
        se = jnp.sqrt(jnp.diag(jnp.linalg.inv(-hessian)))
        inner = out.aux.converged
        return flat, se, (out.result == optx.RESULTS.successful) & inner

    return fit


def _timed(fn, *args):
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return [np.asarray(x) for x in out], time.perf_counter() - start


def _replicate(fit, draw, theta, reps, **labels):
    """Fit `draw(r)` for r = 0, ..., reps (draw 0 compiles and is not timed) and
    print the row of mean `(estimate - theta) / SE`; None when reps is 0."""
    if reps == 0:
        return None
    z, times, ok = [], [], []
    for r in range(reps + 1):
        (est, se, converged), elapsed = _timed(fit, draw(r))
        if r == 0:
            compile_time = elapsed
            continue
        z.append((est - theta) / se)
        times.append(elapsed)
        ok.append(bool(converged))
    z = np.array(z)
    row = dict(
        **labels,
        reps=reps,
        converged=int(np.sum(ok)),
        mean_z=z.mean(axis=0),
        mc_se=z.std(axis=0, ddof=1) / np.sqrt(reps) if reps > 1 else None,
        time=float(np.mean(times)),
        slowest=float(np.max(times)),
        failed=[r + 1 for r, good in enumerate(ok) if not good],
        first=compile_time,
    )
    _print_row(row)
    return row


def linear(args):
    import spmle

    truth = spmle.models.LinearFactor(
        jnp.array(LINEAR_TRUTH["loadings"]), jnp.array(LINEAR_TRUTH["log_sigma"])
    )
    start = spmle.models.LinearFactor(jnp.array([1.2, 0.5]), jnp.array([0.2, 0.0, 0.0]))
    theta = np.r_[LINEAR_TRUTH["loadings"], LINEAR_TRUTH["log_sigma"]]
    rows = []
    for n in [int(float(x)) for x in args.n]:
        reps = args.reps if n < 1_000_000 else args.reps_large
        for m in args.m:
            grid = jnp.linspace(-6.0, 6.0, m)
            for atoms in ("grid", "free"):
                row = _replicate(
                    _fitter(start, grid, atoms),
                    lambda r, n=n: truth.simulate(
                        jax.random.key(1000 * args.seed + r),
                        jnp.array(LINEAR_ATOMS),
                        jnp.array(LINEAR_WEIGHTS),
                        n,
                    ),
                    theta,
                    reps,
                    n=n,
                    m=m,
                    atoms=atoms,
                )
                if row is not None:
                    rows.append(row)
    return rows


def slopes(args):
    import spmle

    periods = 5
    truth = spmle.models.RandomSlopes(jnp.array(np.log(0.7)), jnp.array([0.5]))
    start = spmle.models.RandomSlopes(jnp.array(0.0), jnp.array([0.0]))
    axis = np.linspace(-3.0, 3.0, 13)
    grid = spmle.Grid.product(axis, axis).points
    theta = np.array([np.log(0.7), 0.5])

    def draw(r, n):
        rng = np.random.default_rng([args.seed, r])
        latent = SLOPES_ATOMS[rng.choice(3, size=n, p=SLOPES_WEIGHTS)]
        return truth.simulate(
            jax.random.key(1000 * args.seed + r),
            jnp.asarray(latent),
            regressor=jnp.asarray(rng.standard_normal((n, periods))),
            covariates=jnp.asarray(rng.standard_normal((n, periods, 1))),
        )

    rows = (
        _replicate(
            _fitter(start, grid, atoms),
            lambda r, n=n: draw(r, n),
            theta,
            args.reps,
            n=n,
            m=grid.shape[0],
            atoms=atoms,
        )
        for n in [int(float(x)) for x in args.n]
        for atoms in ("grid", "free")
    )
    return [row for row in rows if row is not None]


def _print_row(row):
    z = " ".join(f"{v:+7.2f}" for v in row["mean_z"])
    mc = f"  (MC SE {np.max(row['mc_se']):.2f})" if row["mc_se"] is not None else ""
    print(
        f"n={row['n']:>8} m={row['m']:>4} {row['atoms']:>4} reps={row['reps']:>3} "
        f"ok={row['converged']:>3}  mean z: {z}{mc}  time {row['time']:.2f} s "
        f"(slowest {row['slowest']:.1f} s, first {row['first']:.1f} s)"
        + (f"  not converged: draws {row['failed']}" if row["failed"] else ""),
        flush=True,
    )


def fabric(args):
    import pandas as pd

    import spmle

    frame = pd.read_csv(HERE.parent / "tests" / "data" / "fabric.csv", comment="#")
    log_length = jnp.asarray(np.log(frame["length"].to_numpy(float)))

    class Faults(spmle.AbstractModel):
        beta: jax.Array

        def log_cond_lik(self, data, support):
            eta = support[None, :] + self.beta * data["log_length"][:, None]
            y = data["faults"][:, None]
            return y * eta - jnp.exp(eta) - jax.scipy.special.gammaln(y + 1)

    grid = jnp.arange(-5.0, -0.95, 0.1)
    fits = {
        atoms: _fitter(Faults(jnp.array(0.5)), grid, atoms)
        for atoms in ("grid", "free")
    }
    rng = np.random.default_rng(args.seed)
    covered = {atoms: [] for atoms in fits}
    ok = {atoms: [] for atoms in fits}
    ses = {atoms: [] for atoms in fits}
    estimates = {atoms: [] for atoms in fits}
    times = {atoms: 0.0 for atoms in fits}
    profiled = []
    for _ in range(args.reps):
        v = rng.choice(FABRIC_ATOMS, size=log_length.size, p=FABRIC_WEIGHTS)
        faults = rng.poisson(np.exp(v + FABRIC_BETA * np.asarray(log_length)))
        data = {"faults": jnp.asarray(faults, float), "log_length": log_length}
        for atoms, fit in fits.items():
            (est, se, converged), elapsed = _timed(fit, data)
            times[atoms] += elapsed
            covered[atoms].append(
                abs(est[0] - FABRIC_BETA) <= 1.959963984540054 * se[0]
            )
            ses[atoms].append(se[0])
            estimates[atoms].append(est[0])
            ok[atoms].append(bool(converged))
        profiled.append(_profile_coverage(Faults, data))
    for atoms in fits:
        c, good = np.array(covered[atoms]), np.array(ok[atoms])
        rate = c[good].mean()
        print(
            f"fabric {atoms:>4}: coverage {rate:.3f} "
            f"(MC SE {np.sqrt(rate * (1 - rate) / good.sum()):.3f}) "
            f"over {good.sum()} of {args.reps} converged; median SE "
            f"{np.median(np.array(ses[atoms])[good]):.4f} (SD of the estimates "
            f"{np.std(np.array(estimates[atoms])[good], ddof=1):.4f}); "
            f"{times[atoms] / args.reps:.2f} s a fit (first includes compilation)"
        )
    _print_profile_coverage(profiled, args.reps)


# The profile's range: the free atoms at beta's 95% ends lie inside [-9, 1].
FABRIC_WIDE = np.arange(-12.0, 4.05, 0.1)


def _profile_coverage(model, data):
    """Per support (`grid`, `free`): `(converged, Wald covers, profile covers,
    Wald width, profile width, profile at the range's edge, seconds)` of
    `spmle.fit` on the wide range (rows not compressed: one shape, one compile)."""
    import warnings

    import spmle

    out = {}
    for atoms in ("grid", "free"):
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            res = spmle.fit(
                model(jnp.array(0.5)), data, FABRIC_WIDE, atoms=atoms, compress=False
            )
            wald = res.conf_int().loc["beta"].to_numpy()
            profile = res.conf_int(kind="profile").loc["beta"].to_numpy()
        edge = any("the range, not the data" in str(w.message) for w in record)
        out[atoms] = (
            res.converged,
            wald[0] <= FABRIC_BETA <= wald[1],
            profile[0] <= FABRIC_BETA <= profile[1],
            wald[1] - wald[0],
            profile[1] - profile[0],
            edge,
            time.perf_counter() - start,
            float(res.params["beta"]),
            float(res.bse["beta"]),
        )
    return out


def _print_profile_coverage(profiled, reps):
    for atoms in ("grid", "free"):
        rows = np.array([p[atoms] for p in profiled], dtype=float)
        good = rows[:, 0] > 0
        line = [f"fabric {atoms:>4} on arange(-12, 4.05, 0.1), {good.sum()} of {reps}"]
        for name, column, width in (("Wald", 1, 3), ("profile", 2, 4)):
            rate = rows[good, column].mean()
            mc_se = np.sqrt(rate * (1 - rate) / good.sum())
            line.append(
                f"{name} {rate:.3f} (MC SE {mc_se:.3f}, median width "
                f"{np.median(rows[good, width]):.4f})"
            )
        line.append(
            f"SD of the estimates {np.std(rows[good, 7], ddof=1):.4f}, median SE "
            f"{np.median(rows[good, 8]):.4f}; profile at the edge "
            f"{int(rows[:, 5].sum())}; {rows[1:, 6].mean():.2f} s a fit + "
            "intervals (warm)"
        )
        print("; ".join(line), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("design", choices=["linear", "fabric", "slopes"])
    parser.add_argument("--n", nargs="+", default=None)
    parser.add_argument("--m", nargs="+", type=int, default=[31, 75, 121])
    parser.add_argument("--reps", type=int, default=None)
    parser.add_argument("--reps-large", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    jax.config.update("jax_enable_x64", True)
    if args.design == "linear":
        args.reps = 20 if args.reps is None else args.reps
        args.n = ["1e4", "1e5", "1e6"] if args.n is None else args.n
        linear(args)
    elif args.design == "slopes":
        args.reps = 10 if args.reps is None else args.reps
        args.n = ["1e3", "1e4"] if args.n is None else args.n
        slopes(args)
    else:
        args.reps = 200 if args.reps is None else args.reps
        fabric(args)


if __name__ == "__main__":
    main()
