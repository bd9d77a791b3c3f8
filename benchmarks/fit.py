#!/usr/bin/env python
"""The LinearFactor fit end to end: `spmle.fit` from the spmlex README's start.

Run on demand (not a test):
`python benchmarks/fit.py [--n 2e3 2e4 2e5 1e6] [--cache]`.

Each n runs in a fresh process (so that peak RSS is its own): simulate the README
design, then `spmle.fit` twice on the same data: "first" includes tracing and
compilation, "warm" is the second call. Prints time, outer iterations, peak RSS
and the estimates. spmlex (measured on this machine when the work was planned):
n = 2000 in 4.4 s warm and 8.0 s first; it did not finish n = 2e4 within 600 s.
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time


def _case(n: int, cache: str | None = None) -> dict:
    import jax

    jax.config.update("jax_enable_x64", True)
    if cache:  # JAX's persistent compilation cache, for the "cached" column
        jax.config.update("jax_compilation_cache_dir", cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    sys.path.insert(
        0, str(__import__("pathlib").Path(__file__).parents[1] / "examples")
    )
    import linear_factor as example

    import spmle

    truth, data = example.simulate(n=n, seed=0)
    grid = spmle.Grid.evenly_spaced(-6.0, 6.0, 75)
    model0 = example.readme_start()  # the example's own draws, not spmle's work
    jax.block_until_ready((data, model0))
    times = []
    for _ in range(2):
        start = time.perf_counter()
        res = spmle.fit(model0, data, grid)
        times.append(time.perf_counter() - start)
    return {
        "n": n,
        "first": times[0],
        "warm": times[1],
        "steps": res.optimizer_info["steps"],
        "converged": res.converged,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "estimates": [round(float(x), 4) for x in res.params],
        "bse": [round(float(x), 4) for x in res.bse],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", nargs="+", type=float, default=[2e3, 2e4, 2e5, 1e6])
    parser.add_argument(
        "--cache",
        action="store_true",
        help="also time the first call in a fresh process whose persistent "
        "compilation cache an earlier process filled",
    )
    parser.add_argument("--case", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(_case(int(args.case), args.cache_dir)))
        return
    print(
        f"{'n':>9} {'first (s)':>10} {'warm (s)':>9} {'steps':>6} {'conv':>5} "
        f"{'RSS (GB)':>9}  estimates (loadings, log sigma)"
    )
    for n in args.n:
        with tempfile.TemporaryDirectory() as cache:
            command = [sys.executable, __file__, "--case", str(n)]
            if args.cache:
                command += ["--cache-dir", cache]
            proc = subprocess.run(command, capture_output=True, text=True)
            cached = None
            if args.cache and proc.returncode == 0:
                again = subprocess.run(command, capture_output=True, text=True)
                cached = json.loads(again.stdout.strip().splitlines()[-1])["first"]
        if proc.returncode != 0:
            print(f"{int(n):>9} error: {proc.stderr.strip()[-300:]}")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        extra = (
            ""
            if cached is None
            else f"  (first call with a filled cache: {cached:.2f} s)"
        )
        print(
            f"{r['n']:>9} {r['first']:>10.2f} {r['warm']:>9.2f} {r['steps']:>6} "
            f"{str(r['converged']):>5} {r['peak_rss_gb']:>9.2f}  {r['estimates']}"
            + extra,
            flush=True,
        )
    print(f"{2000:>9} {8.0:>10.2f} {4.4:>9.2f}   spmlex (reference; n = 2e4 > 600 s)")


if __name__ == "__main__":
    main()
