#!/usr/bin/env python
"""The ready models end to end: `spmle.fit` time and memory, with the closest R
peer side by side on the same simulated data, in one run.

Run on demand (not a test):

    python benchmarks/models.py [--models NormalMeans PoissonMixture ...]
        [--n 1e4 1e5] [--no-eb] [--peer-timeout 300]
    python benchmarks/models.py --one MODEL N     # one configuration, one JSON line

Each (model, n) runs in a fresh process, so that its peak RSS
(`ru_maxrss`, the whole process) is its own: simulate the design below, then
`spmle.fit(model0, data, atoms="grid")` twice on the same data (automatic grid,
identical rows compressed where the model's data repeat). "first" includes
tracing and compiling, "warm" is the second call. The peak RSS is read before
the peer runs. The same process then writes the data to a CSV (the NormalMeans
likelihood matrix to raw float64) in a temporary folder and runs the R peer
with `Rscript` on a small inline script that times only the fitting call
(`system.time(...)[["elapsed"]]`) and reports R's own peak RSS (`VmHWM`), which
includes reading the data.

Designs (seed 0; F a 2- or 3-atom law; `x ~ N(0, 1)`):

* NormalMeans: v on {-2, 0, 2} w (0.3, 0.4, 0.3), se ~ U(0.5, 1.5).
  Peer: R `mixsqp` on the same (n, m) log-likelihood matrix (same grid).
* PoissonMixture: k = 2, beta (0.5, -0.3), v on {0, 1.5} w (0.6, 0.4).
  Peer: `glmer(y ~ x1 + x2 + (1 | id), poisson, nAGQ = 1)`, normal F.
* BinomialMixture: 10 trials, k = 1, beta 0.5, v on {-1, 1} w (0.5, 0.5).
  Peer: `glmer(cbind(y, t - y) ~ x1 + (1 | id), binomial, nAGQ = 1)`, normal F.
* PanelLogit: T = 5, k = 1, beta 1, v on {-1.5, 0, 1.5} w (0.3, 0.4, 0.3).
  Peer: `glmer(y ~ x1 + (1 | id), binomial, nAGQ = 1)` on the long panel.
* WeibullHazard: alpha = exp(0.3), k = 2, beta (0.5, -0.5), v on {-1, 1}
  w (0.5, 0.5), censored at t = 2.
  Peer: `survreg(Surv(t, d) ~ x1 + x2, dist = "weibull")`: no frailty (F one
  point), the model a user fits without a frailty package.
* RandomSlopes: T = 5, z ~ N(0, 1), k = 1, beta 0.5, sigma 1, (a, b) on
  {(-1, 0.5), (1, -0.5), (0, 1)} w (0.4, 0.4, 0.2) (2-D latent: the automatic
  grid has up to 20 x 20 points).
  Peer: `lmer(y ~ z + x1 + (1 + z | id), REML = FALSE)`, normal (a, b).
* EB (the extra row, `--eb-n`, default 1e6): NormalMeans as above, automatic
  grid, timed to the end of `res.posterior()` (the empirical Bayes frame);
  peer R `mixsqp` on the same matrix (the posterior is not timed there).
"""

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np


MODELS = [
    "NormalMeans",
    "PoissonMixture",
    "BinomialMixture",
    "PanelLogit",
    "WeibullHazard",
    "RandomSlopes",
]
T = 5
# Configurations whose spmle fit is left out (the peer still runs): measured
# before the run on this VM, they would take well over ~5 min.
SKIP_SPMLE: dict[str, str] = {}

# The R side: {data} is the input file. Each script prints one JSON line with the
# fitting call's elapsed seconds, R's peak RSS and a short summary of the estimate.
R_FOOTER = r"""
hwm <- grep("^VmHWM", readLines("/proc/self/status"), value = TRUE)
hwm <- as.numeric(gsub("[^0-9]", "", hwm)) / 1024
cat(sprintf('{"time": %.4f, "rss_mb": %.1f, "estimate": "%s"}\n',
            elapsed, hwm, estimate))
"""
R_GLMER = r"""
suppressPackageStartupMessages({{library(lme4); library(data.table)}})
d <- as.data.frame(fread("{data}"))
elapsed <- system.time(fit <- glmer({formula}, family = {family}, data = d,
                                    nAGQ = 1))[["elapsed"]]
estimate <- paste(c(sprintf("%.3f", fixef(fit)[-1]),
                    sprintf("sd %.3f", attr(VarCorr(fit)$id, "stddev"))),
                  collapse = " ")
"""
R_LMER = r"""
suppressPackageStartupMessages({{library(lme4); library(data.table)}})
d <- as.data.frame(fread("{data}"))
elapsed <- system.time(fit <- lmer(y ~ z + x1 + (1 + z | id), data = d,
                                   REML = FALSE))[["elapsed"]]
estimate <- paste(c(sprintf("%.3f", fixef(fit)[3]),
                    sprintf("log sigma %.3f", log(sigma(fit)))), collapse = " ")
"""
R_SURVREG = r"""
suppressPackageStartupMessages({{library(survival); library(data.table)}})
d <- as.data.frame(fread("{data}"))
elapsed <- system.time(fit <- survreg(Surv(t, d) ~ x1 + x2, data = d,
                                      dist = "weibull"))[["elapsed"]]
# survreg's scale is 1 / alpha and its coefficients are -beta / alpha.
estimate <- paste(c(sprintf("%.3f", -coef(fit)[-1] / fit$scale),
                    sprintf("log shape %.3f", -log(fit$scale))), collapse = " ")
"""
R_MIXSQP = r"""
suppressPackageStartupMessages(library(mixsqp))
n <- {n}; m <- {m}
L <- matrix(readBin("{data}", "double", n = as.double(n) * m, size = 8,
                    endian = "little"), nrow = n, ncol = m, byrow = TRUE)
elapsed <- system.time(fit <- mixsqp(L, log = TRUE,
                                     control = list(verbose = FALSE)))[["elapsed"]]
estimate <- sprintf("%s, %d atoms > 1e-6", fit$status, sum(fit$x > 1e-6))
"""


def _design(name: str, n: int):
    """`(model0, data, frame)`: the starting model, the simulated data (jax
    arrays) and the same data as columns for R (None for NormalMeans)."""
    import jax
    import jax.numpy as jnp

    import spmle

    key_latent, key_x, key_y, key_z = jax.random.split(jax.random.key(0), 4)

    def draw(atoms, weights):
        atoms = jnp.asarray(atoms, float)
        index = jax.random.choice(key_latent, len(weights), (n,), p=jnp.array(weights))
        return atoms[index]

    M = spmle.models
    if name == "NormalMeans":
        latent = draw([-2.0, 0.0, 2.0], [0.3, 0.4, 0.3])
        se = 0.5 + jax.random.uniform(key_x, (n,))
        return M.NormalMeans(), M.NormalMeans().simulate(key_y, latent, se=se), None
    if name == "PoissonMixture":
        x = jax.random.normal(key_x, (n, 2))
        truth = M.PoissonMixture(beta=jnp.array([0.5, -0.3]))
        data = truth.simulate(key_y, draw([0.0, 1.5], [0.6, 0.4]), covariates=x)
        frame = {"id": np.arange(n), "y": data["counts"], "x1": x[:, 0], "x2": x[:, 1]}
        return M.PoissonMixture(beta=jnp.zeros(2)), data, frame
    if name == "BinomialMixture":
        x = jax.random.normal(key_x, (n, 1))
        truth = M.BinomialMixture(beta=jnp.array([0.5]))
        latent = draw([-1.0, 1.0], [0.5, 0.5])
        data = truth.simulate(key_y, latent, trials=jnp.full(n, 10.0), covariates=x)
        frame = {
            "id": np.arange(n),
            "y": data["successes"],
            "t": data["trials"],
            "x1": x[:, 0],
        }
        return M.BinomialMixture(beta=jnp.zeros(1)), data, frame
    if name == "PanelLogit":
        x = jax.random.normal(key_x, (n, T, 1))
        truth = M.PanelLogit(jnp.array([1.0]))
        latent = draw([-1.5, 0.0, 1.5], [0.3, 0.4, 0.3])
        data = truth.simulate(key_y, latent, covariates=x)
        frame = {
            "id": np.repeat(np.arange(n), T),
            "y": np.asarray(data["outcomes"]).ravel(),
            "x1": np.asarray(x).ravel(),
        }
        return M.PanelLogit(jnp.zeros(1)), data, frame
    if name == "WeibullHazard":
        x = jax.random.normal(key_x, (n, 2))
        truth = M.WeibullHazard(jnp.array(0.3), jnp.array([0.5, -0.5]))
        latent = draw([-1.0, 1.0], [0.5, 0.5])
        data = truth.simulate(key_y, latent, covariates=x, censor_at=2.0)
        frame = {
            "t": data["durations"],
            "d": data["events"],
            "x1": x[:, 0],
            "x2": x[:, 1],
        }
        return M.WeibullHazard(jnp.array(0.0), jnp.zeros(2)), data, frame
    if name == "RandomSlopes":
        z = jax.random.normal(key_z, (n, T))
        x = jax.random.normal(key_x, (n, T, 1))
        atoms = jnp.array([[-1.0, 0.5], [1.0, -0.5], [0.0, 1.0]])
        index = jax.random.choice(key_latent, 3, (n,), p=jnp.array([0.4, 0.4, 0.2]))
        truth = M.RandomSlopes(jnp.array(0.0), jnp.array([0.5]))
        data = truth.simulate(key_y, atoms[index], regressor=z, covariates=x)
        frame = {
            "id": np.repeat(np.arange(n), T),
            "y": np.asarray(data["outcomes"]).ravel(),
            "z": np.asarray(z).ravel(),
            "x1": np.asarray(x).ravel(),
        }
        return M.RandomSlopes(jnp.array(0.3), jnp.zeros(1)), data, frame
    raise ValueError(f"unknown model {name!r}")


PEERS = {
    "PoissonMixture": (
        "glmer nAGQ=1",
        R_GLMER,
        {"formula": "y ~ x1 + x2 + (1 | id)", "family": "poisson"},
    ),
    "BinomialMixture": (
        "glmer nAGQ=1",
        R_GLMER,
        {"formula": "cbind(y, t - y) ~ x1 + (1 | id)", "family": "binomial"},
    ),
    "PanelLogit": (
        "glmer nAGQ=1",
        R_GLMER,
        {"formula": "y ~ x1 + (1 | id)", "family": "binomial"},
    ),
    "WeibullHazard": ("survreg weibull", R_SURVREG, {}),
    "RandomSlopes": ("lmer (ML)", R_LMER, {}),
}


def _rscript(code: str, folder: str, timeout: float) -> dict:
    path = os.path.join(folder, "peer.R")
    with open(path, "w") as f:
        f.write(code + R_FOOTER)
    # Its own process group, so that a timeout ends R too (Rscript starts R as a
    # child) and no R process outlives the case.
    proc = subprocess.Popen(
        ["Rscript", path],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return {"error": f"timeout after {timeout:.0f} s"}
    if proc.returncode != 0:
        return {"error": stderr.strip()[-300:]}
    return json.loads(stdout.strip().splitlines()[-1])


def _estimate(res) -> str:
    params = res.params
    return " ".join(f"{v:.3f}" for v in params.to_numpy()) if len(params) else ""


def _one(name: str, n: int, peer_timeout: float) -> dict:
    import jax

    jax.config.update("jax_enable_x64", True)
    import spmle

    eb = name == "EB"
    model0, data, frame = _design("NormalMeans" if eb else name, n)
    jax.block_until_ready(data)
    if name in SKIP_SPMLE:
        out = {"model": name, "n": n, "skipped": SKIP_SPMLE[name]}
        with tempfile.TemporaryDirectory() as folder:
            _peer(name, model0, data, frame, folder, peer_timeout, out)
        return out
    times = []
    for _ in range(2):
        start = time.perf_counter()
        res = spmle.fit(model0, data, atoms="grid")
        if eb:
            post = res.posterior()
        times.append(time.perf_counter() - start)
    out = {
        "model": name,
        "n": n,
        "first": times[0],
        "warm": times[1],
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "grid": res.grid_size,
        "converged": bool(res.converged),
        "estimate": _estimate(res),
        "atoms": int(np.sum(np.asarray(res.mixing.probs) > 1e-6)),
    }
    if eb:
        out["posterior_rows"] = len(post)
    print(json.dumps(out), flush=True)  # kept if the peer outlasts the case
    with tempfile.TemporaryDirectory() as folder:
        _peer(name, model0, data, frame, folder, peer_timeout, out)
    return out


def _peer(name, model0, data, frame, folder, peer_timeout, out) -> None:
    """Writes the data (or the likelihood matrix) to `folder`, runs the R peer
    and puts its result into `out`."""
    import spmle

    path = os.path.join(folder, "data.bin" if frame is None else "data.csv")
    if frame is None:  # the same matrix, with the grid the fit chose
        grid = spmle.Grid.automatic(model0, data)
        matrix = np.asarray(model0.log_cond_lik(data, grid.points))
        matrix.astype("<f8").tofile(path)
        code = R_MIXSQP.format(data=path, n=matrix.shape[0], m=matrix.shape[1])
        out["peer"] = "R mixsqp"
        del matrix
    else:
        import pandas as pd

        columns = {k: np.asarray(v) for k, v in frame.items()}
        pd.DataFrame(columns).to_csv(path, index=False)
        out["peer"], template, fields = PEERS[name]
        code = template.format(data=path, **fields)
    out["peer_result"] = _rscript(code, folder, peer_timeout)


NOTES = {
    "NormalMeans": "both: NPMLE of F on the same grid (peer: same matrix)",
    "EB": "spmle: fit + posterior() frame; peer: mixsqp only, same matrix",
    "PoissonMixture": "peer: normal F, Laplace; spmle: NPMLE of F",
    "BinomialMixture": "peer: normal F, Laplace; spmle: NPMLE of F",
    "PanelLogit": "peer: normal F, Laplace, long panel; spmle: NPMLE of F",
    "WeibullHazard": "peer: no frailty (one-point F); spmle: NPMLE of F",
    "RandomSlopes": "peer: normal (a, b) ML; spmle: 2-D NPMLE of F",
}


def _row(r: dict) -> str:
    label = "NormalMeans EB" if r["model"] == "EB" else r["model"]
    if "error" in r:
        return f"| {label} | {r['n']} | | | | | | | error: {r['error']} |"
    peer = r.get("peer_result", {})
    if "skipped" in r:
        peer_s = f"{peer['time']:.2f}" if "time" in peer else ""
        peer_mb = f"{peer['rss_mb']:.0f}" if "rss_mb" in peer else ""
        note = f"{NOTES[r['model']]}; {r['skipped']}; peer {peer.get('estimate', '')}"
        note += f"{peer.get('error', '')}"
        return (
            f"| {label} | {r['n']} | | | | {r['peer']} | {peer_s} | {peer_mb} "
            f"| {note} |"
        )
    peer_s = f"{peer['time']:.2f}" if "time" in peer else ""
    peer_mb = f"{peer['rss_mb']:.0f}" if "rss_mb" in peer else ""
    note = NOTES[r["model"]] + f"; grid {r['grid']}"
    note += f"; spmle {r['estimate']}" if r["estimate"] else f"; {r['atoms']} atoms"
    if not r["converged"]:
        note += " (not converged)"
    note += f"; peer {peer['estimate']}" if "estimate" in peer else ""
    note += f"; peer {peer['error']}" if "error" in peer else ""
    return (
        f"| {label} | {r['n']} | {r['first']:.2f} | {r['warm']:.2f} | "
        f"{r['rss_mb']:.0f} | {r['peer']} | {peer_s} | {peer_mb} | {note} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", nargs="+", default=MODELS, choices=MODELS)
    parser.add_argument("--n", nargs="+", type=float, default=[1e4, 1e5])
    parser.add_argument("--eb-n", type=float, default=1e6)
    parser.add_argument("--no-eb", action="store_true")
    parser.add_argument("--peer-timeout", type=float, default=300.0)
    parser.add_argument("--case-timeout", type=float, default=900.0)
    parser.add_argument("--no-models", action="store_true", help="the EB row only")
    parser.add_argument("--skip", nargs="*", default=[], help="MODEL:N to skip")
    parser.add_argument("--one", nargs=2, metavar=("MODEL", "N"))
    args = parser.parse_args()
    if args.one:
        name, n = args.one[0], int(float(args.one[1]))
        print(json.dumps(_one(name, n, args.peer_timeout)), flush=True)
        return
    print(f"load average at start: {os.getloadavg()}", flush=True)
    cases = [] if args.no_models else [(m, int(n)) for m in args.models for n in args.n]
    if not args.no_eb:
        cases.append(("EB", int(args.eb_n)))
    header = (
        "| model | n | spmle first (s) | spmle warm (s) | spmle peak RSS (MB) "
        "| peer | peer (s) | peer peak RSS (MB) | note |\n"
        "|---|---:|---:|---:|---:|---|---:|---:|---|"
    )
    rows = []
    for name, n in cases:
        if f"{name}:{n:g}" in args.skip or f"{name}:{n}" in args.skip:
            rows.append(f"| {name} | {n} | | | | | | | skipped (over ~5 min) |")
            print(rows[-1], flush=True)
            continue
        command = [sys.executable, __file__, "--one", name, str(n)]
        command += ["--peer-timeout", str(args.peer_timeout)]
        try:
            proc = subprocess.run(
                command, capture_output=True, text=True, timeout=args.case_timeout
            )
            if proc.returncode != 0:
                r = {"model": name, "n": n, "error": proc.stderr.strip()[-200:]}
            else:
                r = json.loads(proc.stdout.strip().splitlines()[-1])
        except subprocess.TimeoutExpired as e:
            text = e.stdout or ""
            text = text.decode() if isinstance(text, bytes) else text
            lines = text.strip().splitlines()
            r = {"model": name, "n": n, "error": f"timeout {args.case_timeout:.0f} s"}
            if lines:  # the spmle part finished; the peer did not
                r = json.loads(lines[-1])
                r["peer_result"] = {"error": f"case timeout {args.case_timeout:.0f} s"}
        rows.append(_row(r))
        print(rows[-1], flush=True)
    print()
    print(header)
    print("\n".join(rows))
    print(f"\nload average at end: {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    main()
