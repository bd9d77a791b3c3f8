#!/usr/bin/env python
"""Value-and-gradient and Hessian of the LinearFactor profile log-likelihood.

Run on demand (not a test):

    python benchmarks/profile_likelihood.py [--n 2e3 2e4 2e5 1e6] [--m 75] [--repeats 3]

Model: the spmlex README's panel `Y_it = lambda_t X* + e_it`, T = 3, lambda_1 = 1,
5 free parameters, a grid of m = 75 points on [-6, 6], X* on {-3, 0, 5} with
weights (0.3, 0.5, 0.2). Each (n, task) runs in a fresh process, so that its peak
RSS (`ru_maxrss`) is its own; "first" includes tracing and compilation, "warm" is
the best of the repeats. spmlex cannot be installed from a package index, so its
row shows the numbers measured on this machine when the work was planned
(value-and-gradient at n = 2e5: 12.1 s, 10.6 GB; its Hessian fails).
"""

import argparse
import json
import resource
import subprocess
import sys
import time


def _case(n: int, m: int, task: str, repeats: int) -> dict:
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    import spmle

    truth = spmle.models.LinearFactor(
        jnp.array([1.5, 0.3]), jnp.array([0.0, 0.2, -0.3])
    )
    data = truth.simulate(
        jax.random.key(0), jnp.array([-3.0, 0.0, 5.0]), jnp.array([0.3, 0.5, 0.2]), n
    )
    grid = jnp.linspace(-6.0, 6.0, m)
    model = spmle.models.LinearFactor(
        jnp.array([1.4, 0.35]), jnp.array([0.1, 0.1, -0.2])
    )

    def value(theta):
        candidate = eqx.tree_at(
            lambda mdl: (mdl.loadings, mdl.log_sigma), model, (theta[:2], theta[2:])
        )
        return spmle.profile_loglik(candidate, data, grid, throw=False)[0]

    fn = jax.jit(
        jax.value_and_grad(value) if task == "value_and_grad" else jax.hessian(value)
    )
    theta = jnp.concatenate([model.loadings, model.log_sigma])
    start = time.perf_counter()
    out = jax.block_until_ready(fn(theta))
    first = time.perf_counter() - start
    warm = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        out = jax.block_until_ready(fn(theta))
        warm = min(warm, time.perf_counter() - start)
    leaf = jax.tree.leaves(out)[0]
    return {
        "n": n,
        "task": task,
        "first": first,
        "warm": warm,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "finite": bool(jnp.all(jnp.isfinite(leaf))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", nargs="+", type=float, default=[2e3, 2e4, 2e5, 1e6])
    parser.add_argument("--m", type=int, default=75)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--case", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(
            json.dumps(
                _case(int(float(args.case[0])), args.m, args.case[1], args.repeats)
            )
        )
        return
    rows = []
    for n in args.n:
        for task in ("value_and_grad", "hessian"):
            proc = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--case",
                    str(n),
                    task,
                    "--m",
                    str(args.m),
                    "--repeats",
                    str(args.repeats),
                ],
                capture_output=True,
                text=True,
            )
            if proc.returncode != 0:
                rows.append(
                    {"n": int(n), "task": task, "error": proc.stderr.strip()[-200:]}
                )
            else:
                rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(rows[-1], file=sys.stderr)
    header = (
        f"{'n':>9} {'task':<15} {'first (s)':>10} {'warm (s)':>9} {'peak RSS (GB)':>14}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        if "error" in r:
            print(f"{r['n']:>9} {r['task']:<15} error: {r['error']}")
        else:
            print(
                f"{r['n']:>9} {r['task']:<15} {r['first']:>10.3f} {r['warm']:>9.3f} "
                f"{r['peak_rss_gb']:>14.2f}"
            )
    print(
        f"{200000:>9} {'spmlex v&g':<15} {'':>10} {12.1:>9.3f} {10.6:>14.2f}"
        "   (reference)"
    )


if __name__ == "__main__":
    main()
