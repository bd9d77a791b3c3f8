#!/usr/bin/env python
"""Benchmark spmle's NPMLE solver against peer mixSQP implementations.

Run on demand (not a test), with the dev environment's interpreter:

    python benchmarks/npmle.py [--n 1e4 1e5 1e6] [--m 20 100 200] [--repeats 3]
                               [--peers mixsqpx R] [--out benchmarks/_work]
                               [--solver-kwargs '{"curvature": "exact"}']
                               [--peer-timeout 900] [--seed 1]

For every (n, m) the problem of `_problems.scale_mixture_problem` is built once
and written to the work directory as .npy (and raw row-major float64 .bin for
R). Each solver then runs in its own process on that same matrix:

* spmle: `jax.jit(lambda L: spmle.npmle(L, solver=MixSQP(**kwargs), throw=False))`
  called on the matrix already placed on the device (as it is when a model
  computes it); "first" is the first call (tracing and compilation included),
  "warm" the best of
  `--repeats` further calls, each waited for with `block_until_ready`.
* peers: `benchmarks/peers/run_mixsqpx.py` and `benchmarks/peers/run_mixsqp.R`
  (see benchmarks/peers/README.md), with the same meaning of first and warm.

Every solver's weights are then judged by one common function: negative
weights are clipped to 0 and the weights renormalised (the status says when
that changed anything), the objective is the mean log-likelihood
`mean_i logsumexp_k(L_ik + log p_k)` and the certificate is
`max_k (d_k - 1)` with `d_k = mean_i exp(L_ik - lse_i)`. The relative gap is
`|f - f_best| / |f_best|` against the best objective of that (n, m).

Prints one table and writes it as markdown to `<out>/npmle_table.md`; the raw
records go to `<out>/npmle_results.json` (both rewritten after every case).
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MIXSQPX_PYTHON = REPO / ".venv-mixsqpx" / "bin" / "python"
RUN_MIXSQPX = HERE / "peers" / "run_mixsqpx.py"
RUN_MIXSQP_R = HERE / "peers" / "run_mixsqp.R"
PEERS = ("mixsqpx", "R")
SOLVER_NAMES = {"spmle": "spmle", "mixsqpx": "mixsqpx", "R": "R mixsqp"}


# --------------------------------------------------------------------------
# spmle worker (runs in a child process, like the peers)
# --------------------------------------------------------------------------


def _result_name(result) -> str:
    import spmle

    for name in ("successful", "max_steps_reached", "stagnation", "invalid_input"):
        if bool(result == getattr(spmle.RESULTS, name)):
            return name
    return "unknown"


def spmle_worker(infile: str, out_prefix: str, repeats: int, solver_kwargs: dict):
    import jax

    jax.config.update("jax_enable_x64", True)
    import spmle

    solver = spmle.MixSQP(**solver_kwargs)
    solve = jax.jit(lambda L: spmle.npmle(L, solver=solver, throw=False))

    # Placed on the device once, before timing: in spmle's own use the matrix is
    # computed there (by the model inside a jitted profile likelihood).
    L = jax.device_put(np.ascontiguousarray(np.load(infile), dtype=np.float64))

    t0 = time.perf_counter()
    sol = jax.block_until_ready(solve(L))
    time_first = time.perf_counter() - t0

    time_warm = None
    for _ in range(max(repeats, 0)):
        del sol
        t0 = time.perf_counter()
        sol = jax.block_until_ready(solve(L))
        dt = time.perf_counter() - t0
        time_warm = dt if time_warm is None else min(time_warm, dt)

    probs = np.asarray(sol.probs, dtype=np.float64)
    np.save(out_prefix + ".probs.npy", probs)
    print(
        json.dumps(
            {
                "solver": "spmle",
                "version": f"{spmle.__version__} (jax {jax.__version__})",
                "time_first": time_first,
                "time_warm": time_warm,
                "iterations": int(sol.num_steps),
                "qp_iterations": int(sol.num_qp_steps),
                "status": _result_name(sol.result),
                "own_kkt_violation": float(sol.kkt_violation),
                "own_kkt_support_residual": float(sol.kkt_support_residual),
                "own_mean_loglik": float(sol.mean_loglik),
                "solver_kwargs": solver_kwargs,
            }
        )
    )


# --------------------------------------------------------------------------
# Common evaluation of returned weights
# --------------------------------------------------------------------------


def evaluate(L: np.ndarray, probs: np.ndarray, block: int = 50_000) -> dict:
    """Objective and certificate of `probs` on `L`, computed the same way for all."""
    probs = np.asarray(probs, dtype=np.float64).ravel()
    n, m = L.shape
    out = {"min_prob": float(np.min(probs)), "sum_minus_1": float(np.sum(probs) - 1)}
    if probs.shape != (m,) or not np.all(np.isfinite(probs)):
        out.update(objective=float("nan"), certificate=float("nan"), clipped=False)
        return out
    p = np.clip(probs, 0.0, None)
    total = p.sum()
    if total <= 0:
        out.update(objective=float("nan"), certificate=float("nan"), clipped=True)
        return out
    p = p / total
    with np.errstate(divide="ignore"):
        log_p = np.log(p)
    obj = 0.0
    d = np.zeros(m)
    for start in range(0, n, block):
        rows = np.asarray(L[start : start + block], dtype=np.float64)
        z = rows + log_p
        top = z.max(axis=1, keepdims=True)
        lse = top[:, 0] + np.log(np.exp(z - top).sum(axis=1))
        obj += lse.sum()
        d += np.exp(rows - lse[:, None]).sum(axis=0)
        del rows, z
    out.update(
        objective=obj / n,
        certificate=float(np.max(d / n - 1.0)),
        clipped=bool(np.any(probs < 0) or abs(out["sum_minus_1"]) > 1e-12),
    )
    return out


# --------------------------------------------------------------------------
# Running one solver in a child process
# --------------------------------------------------------------------------


def run_child(cmd: list[str], timeout: float) -> dict:
    """Run `cmd`; return its last JSON line, or a record of what went wrong."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        cwd=REPO,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # The child leads its own process group: end that group only.
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return {"status": "timeout", "wall": time.perf_counter() - t0}
    wall = time.perf_counter() - t0
    record = None
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                record = json.loads(line)
                break
            except json.JSONDecodeError:
                pass
    if proc.returncode != 0 or record is None:
        tail = (stderr or stdout or "").strip().splitlines()[-5:]
        return {
            "status": f"error (rc={proc.returncode})",
            "wall": wall,
            "stderr_tail": tail,
        }
    record["wall"] = wall
    return record


def peer_available(peer: str) -> tuple[bool, str]:
    if peer == "mixsqpx":
        if not MIXSQPX_PYTHON.exists():
            return False, f"{MIXSQPX_PYTHON} not found"
        ok = (
            subprocess.run(
                [str(MIXSQPX_PYTHON), "-c", "import mixsqpx"], capture_output=True
            ).returncode
            == 0
        )
        return ok, "" if ok else "mixsqpx does not import in .venv-mixsqpx"
    if peer == "R":
        if shutil.which("Rscript") is None:
            return False, "Rscript not on PATH"
        ok = (
            subprocess.run(
                ["Rscript", "-e", "suppressPackageStartupMessages(library(mixsqp))"],
                capture_output=True,
            ).returncode
            == 0
        )
        return ok, "" if ok else "R package mixsqp not installed"
    return False, f"unknown peer {peer!r}"


def peer_version(peer: str) -> str:
    try:
        if peer == "mixsqpx":
            code = (
                "import importlib.metadata as m, jax; "
                "print(m.version('mixsqpx'), '(jax', jax.__version__ + ')')"
            )
            return subprocess.run(
                [str(MIXSQPX_PYTHON), "-c", code], capture_output=True, text=True
            ).stdout.strip()
        if peer == "R":
            code = 'cat(sprintf("%s (R %s)", packageVersion("mixsqp"), getRversion()))'
            return subprocess.run(
                ["Rscript", "-e", code], capture_output=True, text=True
            ).stdout.strip()
    except OSError:
        pass
    return "unknown"


# --------------------------------------------------------------------------
# Table
# --------------------------------------------------------------------------


COLUMNS = (
    "n",
    "m",
    "solver",
    "first (s)",
    "warm (s)",
    "iters",
    "objective",
    "rel gap to best",
    "certificate",
    "status",
)


def _fmt_time(t):
    return "-" if t is None else f"{t:.3f}"


def _fmt_sci(x):
    return "-" if x is None or not np.isfinite(x) else f"{x:.1e}"


def table_rows(records: list[dict]) -> list[tuple[str, ...]]:
    rows = []
    for r in records:
        status = r.get("status", "?")
        if r.get("clipped"):
            lo, off = r["min_prob"], r["sum_minus_1"]
            status += f" [p clipped: min {lo:.1e}, sum-1 {off:.1e}]"
        obj = r.get("objective")
        rows.append(
            (
                str(r["n"]),
                str(r["m"]),
                SOLVER_NAMES.get(r["solver"], r["solver"]),
                _fmt_time(r.get("time_first")),
                _fmt_time(r.get("time_warm")),
                "-" if r.get("iterations") is None else str(r["iterations"]),
                "-" if obj is None or not np.isfinite(obj) else f"{obj:.12f}",
                _fmt_sci(r.get("rel_gap")),
                _fmt_sci(r.get("certificate")),
                status,
            )
        )
    return rows


def _short(n: int) -> str:
    e = int(round(np.log10(n))) if n > 0 else 0
    return f"1e{e}" if 10**e == n else str(n)


def speedup_line(records: list[dict]) -> str:
    parts = []
    cases = sorted({(r["n"], r["m"]) for r in records})
    for n, m in cases:
        warm = {
            r["solver"]: r.get("time_warm")
            for r in records
            if (r["n"], r["m"]) == (n, m)
        }
        a, b = warm.get("spmle"), warm.get("mixsqpx")
        if a and b:
            parts.append(f"n={_short(n)} m={m}: {b / a:.2f}x")
        elif "mixsqpx" in warm:
            parts.append(f"n={_short(n)} m={m}: n/a")
    if not parts:
        return "Speed-up of spmle warm over mixsqpx warm: n/a (mixsqpx not run)"
    return (
        "Speed-up of spmle warm over mixsqpx warm (mixsqpx warm / spmle warm): "
        + "; ".join(parts)
    )


def plain_table(rows) -> str:
    widths = [
        max(len(c), *(len(r[i]) for r in rows)) if rows else len(c)
        for i, c in enumerate(COLUMNS)
    ]
    right = {0, 1, 3, 4, 5, 6, 7, 8}

    def fmt(cells):
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    lines = [fmt(COLUMNS), "  ".join("-" * w for w in widths)]
    lines += [fmt(r) for r in rows]
    return "\n".join(lines)


def markdown_table(rows) -> str:
    lines = [
        "| " + " | ".join(COLUMNS) + " |",
        "|"
        + "|".join(
            "---:" if i in {0, 1, 3, 4, 5, 6, 7, 8} else "---"
            for i in range(len(COLUMNS))
        )
        + "|",
    ]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def machine_line() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}"


def write_outputs(out: Path, records: list[dict], meta: dict, final: bool):
    rows = table_rows(records)
    md = [
        f"# NPMLE benchmark ({'complete' if final else 'partial'})",
        "",
        f"- date: {meta['date']}",
        f"- machine: {meta['machine']}",
        f"- versions: {', '.join(f'{k} {v}' for k, v in meta['versions'].items())}",
        f"- seed: {meta['seed']}, repeats: {meta['repeats']}, "
        f"spmle MixSQP kwargs: {json.dumps(meta['solver_kwargs'])}",
        "",
        markdown_table(rows),
        "",
        speedup_line(records),
    ]
    for note in meta["notes"]:
        md.append(f"\nNote: {note}")
    (out / "npmle_table.md").write_text("\n".join(md) + "\n")
    (out / "npmle_results.json").write_text(
        json.dumps({"meta": meta, "records": records}, indent=1, default=str)
    )


# --------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------


def run_case(n, m, args, peers, solver_kwargs, out: Path) -> list[dict]:
    sys.path.insert(0, str(HERE))
    from _problems import scale_mixture_problem

    case = out / f"n{n}_m{m}"
    t0 = time.perf_counter()
    L = scale_mixture_problem(args.seed, n, m)
    npy = str(case) + ".L.npy"
    binf = str(case) + ".L.bin"
    np.save(npy, L)
    if "R" in peers:
        L.astype("<f8", copy=False).tofile(binf)
    del L
    gc.collect()
    print(
        f"[n={n} m={m}] problem built and written in {time.perf_counter() - t0:.1f}s",
        flush=True,
    )

    commands = {
        "spmle": [
            sys.executable,
            str(Path(__file__).resolve()),
            "--worker",
            npy,
            str(case) + ".spmle",
            "--repeats",
            str(args.repeats),
            "--solver-kwargs",
            json.dumps(solver_kwargs),
        ],
        "mixsqpx": [
            str(MIXSQPX_PYTHON),
            str(RUN_MIXSQPX),
            npy,
            str(case) + ".mixsqpx",
            "--repeats",
            str(args.repeats),
        ],
        "R": [
            "Rscript",
            str(RUN_MIXSQP_R),
            binf,
            str(n),
            str(m),
            str(case) + ".R",
            str(args.repeats),
        ],
    }
    probs_files = {
        "spmle": str(case) + ".spmle.probs.npy",
        "mixsqpx": str(case) + ".mixsqpx.probs.npy",
        "R": str(case) + ".R.probs.bin",
    }

    records = []
    for solver in ("spmle", *peers):
        rec = run_child(commands[solver], args.peer_timeout)
        rec.update(n=n, m=m, solver=solver)
        path = probs_files[solver]
        if os.path.exists(path) and not rec["status"].startswith(("timeout", "error")):
            probs = (
                np.load(path)
                if path.endswith(".npy")
                else np.fromfile(path, dtype="<f8")
            )
            rec["probs"] = probs.tolist()
            os.remove(path)
        print(
            f"[n={n} m={m}] {solver}: status={rec['status']} "
            f"first={rec.get('time_first')} warm={rec.get('time_warm')} "
            f"iters={rec.get('iterations')} wall={rec.get('wall'):.1f}s",
            flush=True,
        )
        if "stderr_tail" in rec:
            print("    " + "\n    ".join(rec["stderr_tail"]), flush=True)
        records.append(rec)

    # Judge every answer with the same function on the same matrix.
    L = np.load(npy, mmap_mode="r")
    for rec in records:
        if "probs" in rec:
            rec.update(evaluate(L, np.asarray(rec["probs"])))
    del L
    objs = [
        r["objective"]
        for r in records
        if r.get("objective") is not None and np.isfinite(r["objective"])
    ]
    if objs:
        best = max(objs)
        for r in records:
            if r.get("objective") is not None and np.isfinite(r["objective"]):
                r["rel_gap"] = abs(r["objective"] - best) / abs(best)
    for r in records:
        r.pop("probs", None)
    for f in (npy, binf):
        if os.path.exists(f):
            os.remove(f)
    gc.collect()
    return records


def _size(s: str) -> int:
    v = float(s)
    if v != int(v) or v < 1:
        raise argparse.ArgumentTypeError(f"{s!r} is not a positive integer")
    return int(v)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=_size, nargs="+", default=[10**4, 10**5, 10**6])
    ap.add_argument("--m", type=_size, nargs="+", default=[20, 100, 200])
    ap.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="warm calls per solver; the best is reported",
    )
    ap.add_argument(
        "--peers",
        nargs="*",
        choices=PEERS,
        default=None,
        help="peers to run (default: every installed one)",
    )
    ap.add_argument("--out", default=str(HERE / "_work"))
    ap.add_argument(
        "--solver-kwargs", default="{}", help="JSON dict of spmle.MixSQP options"
    )
    ap.add_argument(
        "--peer-timeout",
        type=float,
        default=900.0,
        help="seconds before a solver process is killed ('timeout')",
    )
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--worker", nargs=2, metavar=("IN_NPY", "OUT_PREFIX"), help=argparse.SUPPRESS
    )
    args = ap.parse_args(argv)

    solver_kwargs = json.loads(args.solver_kwargs)
    if not isinstance(solver_kwargs, dict):
        ap.error("--solver-kwargs must be a JSON object")

    if args.worker:
        spmle_worker(args.worker[0], args.worker[1], args.repeats, solver_kwargs)
        return 0

    # Fail early on bad solver options, before any problem is built.
    import jax

    jax.config.update("jax_enable_x64", True)
    import spmle

    spmle.MixSQP(**solver_kwargs)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    notes = []
    requested = list(PEERS) if args.peers is None else list(args.peers)
    peers = []
    for peer in requested:
        ok, why = peer_available(peer)
        if ok:
            peers.append(peer)
        else:
            notes.append(
                f"peer {peer} skipped: {why} "
                "(install with `bash benchmarks/peers/setup_peers.sh`)"
            )
            print("NOTE: " + notes[-1], flush=True)

    versions = {
        "spmle": spmle.__version__,
        "jax": jax.__version__,
        "numpy": np.__version__,
    }
    for peer in peers:
        versions["mixsqpx" if peer == "mixsqpx" else "R mixsqp"] = peer_version(peer)
    meta = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_line(),
        "versions": versions,
        "seed": args.seed,
        "repeats": args.repeats,
        "solver_kwargs": solver_kwargs,
        "notes": notes,
        "n": args.n,
        "m": args.m,
        "peers": peers,
    }
    print(f"machine: {meta['machine']}", flush=True)
    print(f"versions: {versions}", flush=True)

    records = []
    for n in args.n:
        for m in args.m:
            records += run_case(n, m, args, peers, solver_kwargs, out)
            write_outputs(out, records, meta, final=False)

    write_outputs(out, records, meta, final=True)
    print()
    print(plain_table(table_rows(records)))
    print(speedup_line(records))
    for note in notes:
        print("Note: " + note)
    print(f"\nmarkdown: {out / 'npmle_table.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
