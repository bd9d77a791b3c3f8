#!/usr/bin/env python
"""Monte Carlo coverage of spmle's 95% intervals for the LinearFactor model.

Run on demand (not a test):
`python benchmarks/mc_coverage.py [--reps 200] [--n 1000] [--m 75]`.

Each replication simulates the spmlex README design (X* on {-3, 0, 5} with weights
(0.3, 0.5, 0.2), loadings (1.5, 0.3), log sigma (0, 0.2, -0.3)), fits theta by the
profile likelihood from a common start on a grid of m evenly spaced points on
[-6, 6] and forms Wald intervals from the exact profile Hessian. Replications are
mapped in batches inside one compiled program. Prints, per parameter, the
coverage, the mean standard error, the Monte Carlo standard deviation and the bias.

The default grid is the spmlex README's (m = 75); m = 121 or m = 25 put the true
atoms on the grid. The noise scales come out biased downward on every grid
(log_sigma[1] by about -0.75 standard errors at n = 1000), which puts its
coverage near 0.89: see benchmarks/README.md.
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx


TRUTH = {"loadings": [1.5, 0.3], "log_sigma": [0.0, 0.2, -0.3]}
ATOMS, WEIGHTS = [-3.0, 0.0, 5.0], [0.3, 0.5, 0.2]


def simulate_coverage(
    key,
    reps: int,
    n: int,
    m: int = 75,
    batch_size: int | None = None,
    bootstrap: int = 0,
):
    """(estimates, standard errors, converged) for `reps` replications, mapped in
    vmapped batches of `batch_size` (default 8, and 1 on CPU, where two batched
    LAPACK calls at once can deadlock XLA's thread pool: see `map_groups`); with
    `bootstrap` draws, also each replication's bootstrap refits (B, k), as
    `spmle.fit(..., cov_type="bootstrap")` makes them."""
    if batch_size is None:
        batch_size = 1 if jax.default_backend() == "cpu" else 8
    import spmle
    from spmle import estimation

    truth = spmle.models.LinearFactor(
        jnp.array(TRUTH["loadings"]), jnp.array(TRUTH["log_sigma"])
    )
    start = spmle.models.LinearFactor(jnp.array([1.2, 0.5]), jnp.array([0.2, 0.0, 0.0]))
    params0 = estimation.parameters(start)
    grid = jnp.linspace(-6.0, 6.0, m)
    optimizer = estimation.default_optimizer()

    def one(key):
        key, key_weights = jax.random.split(key)
        data = truth.simulate(key, jnp.array(ATOMS), jnp.array(WEIGHTS), n)
        problem = estimation.ProfileProblem.build(start, data, grid)
        out = estimation.minimise(problem, params0, optimizer=optimizer, max_steps=500)
        flat, unflatten = estimation.flatten(out.params)
        _, _, hessian = estimation.derivatives(
            problem.at_optimum(out.aux), flat, unflatten
        )
        se = jnp.sqrt(jnp.diag(jnp.linalg.inv(-hessian)))
        ok = out.result == optx.RESULTS.successful
        if not bootstrap:
            return flat, se, ok
        multipliers = jax.random.exponential(key_weights, (bootstrap, n))
        draws, draws_ok = estimation.bootstrap_refits(
            problem,
            out.params,
            problem.warm_start(out.aux),
            optimizer,
            jnp.asarray(500),
            multipliers,
            1,
        )
        return flat, se, ok & jnp.all(draws_ok), draws

    keys = jax.random.split(key, reps)
    return jax.jit(lambda k: jax.lax.map(one, k, batch_size=batch_size))(keys)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--m", type=int, default=75)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=0,
        help="bootstrap draws per replication: also report the bias-corrected, "
        "basic and percentile intervals of `Results.conf_int`",
    )
    args = parser.parse_args()
    jax.config.update("jax_enable_x64", True)
    start = time.perf_counter()
    out = [
        np.asarray(x)
        for x in simulate_coverage(
            jax.random.key(args.seed),
            args.reps,
            args.n,
            args.m,
            bootstrap=args.bootstrap,
        )
    ]
    est, se, ok = out[:3]
    elapsed = time.perf_counter() - start
    truth = np.r_[TRUTH["loadings"], TRUTH["log_sigma"]]
    names = [
        "loadings[0]",
        "loadings[1]",
        "log_sigma[0]",
        "log_sigma[1]",
        "log_sigma[2]",
    ]
    covered = np.abs(est - truth) <= 1.959963984540054 * se
    print(
        f"{args.reps} replications, n = {args.n}, m = {args.m}, {ok.sum()} converged, "
        f"{elapsed:.1f} s"
    )
    print(f"{'parameter':<14}{'coverage':>10}{'mean SE':>10}{'MC SD':>10}{'bias':>10}")
    for j, name in enumerate(names):
        print(
            f"{name:<14}{covered[ok, j].mean():>10.3f}{se[ok, j].mean():>10.4f}"
            f"{est[ok, j].std():>10.4f}{(est[ok, j] - truth[j]).mean():>10.4f}"
        )
    if args.bootstrap:
        intervals = bootstrap_intervals(est, out[3])
        print(
            f"\nBootstrap ({args.bootstrap} exponential-weight refits a replication): "
            "coverage of `conf_int(kind=...)` with cov_type='bootstrap'"
        )
        print(f"{'parameter':<14}" + "".join(f"{k:>16}" for k in intervals))
        for j, name in enumerate(names):
            row = "".join(
                f"{((lo[ok, j] <= truth[j]) & (truth[j] <= hi[ok, j])).mean():>16.3f}"
                for lo, hi in intervals.values()
            )
            print(f"{name:<14}{row}")
        bias = (out[3].mean(axis=1) - est)[ok].mean(axis=0)
        print(f"{'mean bootstrap bias':<20}" + " ".join(f"{b:.4f}" for b in bias))


def bootstrap_intervals(est, draws, alpha: float = 0.05):
    """`{kind: (lower, upper)}` for each replication, as `Results.conf_int`
    computes them from the fit's bootstrap draws (reps, B, k)."""
    import pandas as pd

    import spmle

    out = {kind: ([], []) for kind in ("wald", "bias_corrected", "basic", "percentile")}
    for theta, sample in zip(est, draws, strict=True):
        res = spmle.Results(
            model=None,
            params=pd.Series(theta),
            cov=np.cov(sample.T),
            cov_type="bootstrap",
            llf=0.0,
            nobs=1,
            df_mixing=0,
            hessian=np.zeros((theta.size, theta.size)),
            converged=True,
            optimizer_info={},
            method="",
            draws=sample,
        )
        for kind, (low, high) in out.items():
            interval = res.conf_int(alpha, kind)
            low.append(interval["lower"].to_numpy())
            high.append(interval["upper"].to_numpy())
    return {k: (np.array(lo), np.array(hi)) for k, (lo, hi) in out.items()}


if __name__ == "__main__":
    main()
