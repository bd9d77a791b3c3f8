#!/usr/bin/env python
"""Run the mixsqpx NPMLE solver on a log-likelihood matrix (peer benchmark).

Run with the interpreter of .venv-mixsqpx (see setup_peers.sh):

    .venv-mixsqpx/bin/python benchmarks/peers/run_mixsqpx.py IN.npy OUT [--repeats K]

IN.npy holds an (n, m) float64 matrix of LOG likelihoods, rows = observations.
Writes the mixture weights to OUT_PREFIX.probs.npy and prints one JSON line:
{"solver", "version", "time_first", "time_warm", "iterations", "status"}.

mixsqpx API used: ``mixsqpx.mixsolve(lclk)`` with ``lclk`` the (n, m) float64
log-likelihood matrix and every solver option left at its default. It returns
``(weights (m,), gradient (m,), hessian (m, m))``; it exposes neither an
iteration count nor a convergence flag, so ``iterations`` is null and
``status`` only reports whether the returned weights are finite.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from importlib import metadata

import numpy as np


def _block(outputs):
    # Materialise every output on the host; this waits for the computation.
    return [np.asarray(o) for o in outputs]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("infile", help="(n, m) float64 .npy of log likelihoods")
    ap.add_argument("out_prefix", help="weights go to OUT_PREFIX.probs.npy")
    ap.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="number of warm calls; the best is reported (default 1)",
    )
    args = ap.parse_args(argv)

    import jax

    # mixsqpx's C++ kernel is registered for float64 on CPU only. Importing
    # mixsqpx turns on x64 and selects the CPU platform itself, but do it
    # explicitly so the input is never silently downcast to float32.
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_platform_name", "cpu")
    from mixsqpx import mixsolve

    L = np.load(args.infile)
    if L.ndim != 2:
        raise SystemExit(f"expected a 2-D matrix, got shape {L.shape}")
    L = np.ascontiguousarray(L, dtype=np.float64)

    # First call: includes jit tracing/compilation and host->device transfer.
    t0 = time.perf_counter()
    out = _block(mixsolve(L))
    time_first = time.perf_counter() - t0

    time_warm = None
    for _ in range(max(args.repeats, 0)):
        t0 = time.perf_counter()
        out = _block(mixsolve(L))
        dt = time.perf_counter() - t0
        time_warm = dt if time_warm is None else min(time_warm, dt)

    probs = np.asarray(out[0], dtype=np.float64)
    np.save(args.out_prefix + ".probs.npy", probs)

    if not np.all(np.isfinite(probs)):
        status = "nan_output"
    else:
        status = "ok"

    try:
        version = metadata.version("mixsqpx")
    except metadata.PackageNotFoundError:  # pragma: no cover
        version = "unknown"
    version = f"{version} (jax {jax.__version__})"

    print(
        json.dumps(
            {
                "solver": "mixsqpx",
                "version": version,
                "time_first": time_first,
                "time_warm": time_warm,
                "iterations": None,
                "status": status,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
