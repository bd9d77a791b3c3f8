"""The `spmle` command: a demo, and the NPMLE of a log-likelihood matrix from CSV."""

import argparse
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from .npmle import RESULTS, MixSQP, npmle
from .simulate import normal_means


def _demo(args) -> int:
    atoms = np.array([-2.0, 0.0, 1.5])
    weights = np.array([0.3, 0.5, 0.2])
    grid = jnp.linspace(-5.0, 5.0, args.m)
    key = jax.random.key(args.seed)
    _, _, log_lik = normal_means(key, args.n, grid, atoms=atoms, probs=weights)
    solver = MixSQP(tol=args.tol)

    # As a user calls it: eager, so the input is checked and the solve runs as
    # spmle's own compiled program.
    def solve(log_lik):
        return npmle(log_lik, solver=solver, throw=False)

    start = time.perf_counter()
    sol = jax.block_until_ready(solve(log_lik))
    first = time.perf_counter() - start
    start = time.perf_counter()
    sol = jax.block_until_ready(solve(log_lik))
    warm = time.perf_counter() - start

    probs = np.asarray(sol.probs)
    grid = np.asarray(grid)
    mean = float(probs @ grid)
    true_mean = float(weights @ atoms)
    print("spmle demo: NPMLE of a normal-means mixing distribution")
    print(f"  data      n = {args.n:,} draws x_i ~ N(theta_i, 1), seed {args.seed}")
    truth = " + ".join(
        f"{w:.1f} d({a:+.1f})" for w, a in zip(weights, atoms, strict=True)
    )
    print(f"  truth     theta ~ {truth}")
    print(f"  grid      m = {args.m} points on [-5, 5]")
    print(f"  status    {'converged' if sol.converged else RESULTS[sol.result]}")
    print(f"  steps     {int(sol.num_steps)} SQP, {int(sol.num_qp_steps)} active-set")
    print(f"  time      {first:.3f} s first call (compile), {warm * 1e3:.2f} ms warm")
    print(f"  loglik    {float(sol.loglik):.6f} (mean {float(sol.mean_loglik):.6f})")
    print(
        f"  KKT       max_k (d_k - 1) = {float(sol.kkt_violation):.2e}, "
        f"support |d_k - 1| <= {float(sol.kkt_support_residual):.2e}"
    )
    print(f"  mean of F {mean:+.4f} (truth {true_mean:+.4f})")
    print("  estimated F (support points with weight >= 0.5%):")
    for point, weight in zip(grid, probs, strict=True):
        if weight >= 0.005:
            print(f"    {point:+7.3f}  {weight:.4f}  {'#' * int(round(60 * weight))}")
    return 0 if sol.converged else 1


def _npmle_csv(args) -> int:
    log_lik = np.loadtxt(args.file, delimiter=",", ndmin=2)
    weights = None if args.weights is None else np.loadtxt(args.weights, delimiter=",")
    sol = npmle(log_lik, weights=weights, solver=MixSQP(tol=args.tol), throw=False)
    print(f"# status: {RESULTS[sol.result] or 'converged'}")
    print(f"# loglik: {float(sol.loglik):.12g}")
    print(f"# kkt_violation: {float(sol.kkt_violation):.3e}")
    for weight in np.asarray(sol.probs):
        print(f"{weight:.17g}")
    return 0 if sol.converged else 1


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `spmle` command (also `python -m spmle`)."""
    parser = argparse.ArgumentParser(prog="spmle", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    demo = sub.add_parser("demo", help="simulate a normal-means problem and solve it")
    demo.add_argument("--n", type=int, default=100_000, help="observations")
    demo.add_argument("--m", type=int, default=100, help="grid points")
    demo.add_argument("--seed", type=int, default=0, help="PRNG seed")
    demo.add_argument("--tol", type=float, default=1e-8, help="KKT tolerance")
    csv = sub.add_parser("npmle", help="NPMLE of an (n, m) log-likelihood CSV matrix")
    csv.add_argument("file", help="CSV file: n rows of m log-likelihoods")
    csv.add_argument("--weights", help="CSV file of n observation weights")
    csv.add_argument("--tol", type=float, default=1e-8, help="KKT tolerance")
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["demo", *(argv or [])])
    # The command is an application: it may choose float64 for its own scope.
    with jax.enable_x64(True):
        return _demo(args) if args.command == "demo" else _npmle_csv(args)


if __name__ == "__main__":
    sys.exit(main())
