"""The `spmle` command: a demo, and empirical Bayes from a CSV file.

Commands:
  spmle [demo]      simulate a normal-means problem, fit it, draw the estimate
  spmle npmle       fit a ready model (normal, Poisson, binomial) to a CSV file
                    and write the prior, each row's posterior, the summary and a
                    plot
  spmle npmle-matrix
                    the NPMLE of an (n, m) matrix of log-likelihoods in CSV

Exit status:
  0  success (also when the output is cut short by a closed pipe, e.g. `| head`)
  1  the fit did not converge (the files are written all the same)
  2  bad input: usage errors, a missing file or column, a non-numeric value, a
     NaN row, a file with no rows; one line on stderr, `spmle: error: ...`

Rows in error messages are numbered from 1, the header line not counted.
"""

# Only the standard library at the top: `spmle --help` and `--version` must not
# pay for JAX, pandas or the rest of spmle; each command imports what it uses.
import argparse
import os
import sys
import warnings
from pathlib import Path


EXIT_OK, EXIT_NOT_CONVERGED, EXIT_BAD_INPUT = 0, 1, 2

FAMILIES = {
    # family: (model class name, the value column's data key, its own option)
    "normal": ("NormalMeans", "x", "se"),
    "poisson": ("PoissonMixture", "counts", "exposure"),
    "binomial": ("BinomialMixture", "successes", "trials"),
}

_EPILOG = """\
exit status:
  0  success (also when the output is cut short by a closed pipe, e.g. `| head`)
  1  the fit did not converge (the files are written all the same)
  2  bad input: usage errors, a missing file or column, a non-numeric value,
     a NaN row, a file with no rows (one line on stderr: `spmle: error: ...`)
"""

_NPMLE_EPILOG = """\
examples:
  spmle npmle schools.csv --family normal --value effect --se se --out fit/
  spmle npmle claims.csv --family poisson --value claims --exposure years \\
      --covariates age --out fit/
  spmle npmle hospitals.csv --family binomial --value deaths --trials cases \\
      --out fit/

writes into DIR:
  prior.csv      the estimated prior F: support, weight, cdf
  posterior.csv  the input rows, in order, with each row's posterior mean, sd,
                 the equal-tailed credible interval lower, upper at --level and
                 (normal) the local false sign rate lfsr; an input column of
                 the same name is kept and the new one prefixed `posterior_`
  fit.txt        the summary table
  prior.png      the plot of F's CDF (skipped, with a note, without matplotlib)

Rows in error messages are numbered from 1, the header line not counted.
"""


class InputError(ValueError):
    """Bad input the command itself detects (exit 2, one line on stderr)."""


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("spmle")
    except PackageNotFoundError:  # a source tree that is not installed
        return "0.0.0+unknown"


def _one_line(error: BaseException) -> str:
    # A KeyError's str() is the repr of its message: show the message itself.
    message = error.args[0] if isinstance(error, KeyError) and error.args else error
    text = " ".join(str(message).split())
    return text or type(error).__name__


def _relay_warnings(caught) -> None:
    """The fit's warnings (e.g. mass on the grid's edge) as one line each."""
    seen = set()
    for item in caught:
        text = " ".join(str(item.message).split())
        if text not in seen:
            seen.add(text)
            print(f"spmle: warning: {text}", file=sys.stderr)


# --------------------------------------------------------------------------- demo


def _demo(args) -> int:
    import jax

    try:
        from spmle import _demo

        _demo.run  # noqa: B018
    except (ImportError, AttributeError) as error:
        raise InputError(f"this spmle has no demo ({_one_line(error)}).") from None
    try:
        with jax.enable_x64(True):
            out = _demo.run(
                n=args.n, grid=args.grid, seed=args.seed, out=args.out, show=print
            )
    except ModuleNotFoundError as error:
        if (error.name or "").partition(".")[0] != "matplotlib":
            raise
        raise InputError(
            "the demo draws a figure: it needs matplotlib (pip install matplotlib)."
        ) from None
    return EXIT_OK if out["results"].converged else EXIT_NOT_CONVERGED


# -------------------------------------------------------------------------- npmle


def _check_npmle_args(args) -> None:
    """Options that do not fit the family, before anything is read or fitted."""
    for family, (_, _, option) in FAMILIES.items():
        if family != args.family and getattr(args, option) is not None:
            raise InputError(
                f"--{option} is for --family {family}, not --family {args.family}."
            )
    if args.family == "normal":
        if args.se is None:
            raise InputError(
                "--family normal needs --se COL, the column of standard errors."
            )
        if args.covariates:
            raise InputError("--covariates is for --family poisson or binomial.")
    if args.family == "binomial" and args.trials is None:
        raise InputError("--family binomial needs --trials COL, the column of trials.")
    if not 0 < args.level < 1:
        raise InputError(f"--level {args.level}: use a probability in (0, 1).")
    if args.grid is not None and args.grid < 2:
        raise InputError(f"--grid {args.grid}: use at least 2 points.")


def _read_csv(path: str):
    import pandas as pd

    if not os.path.exists(path):
        raise InputError(f"{path}: no such file.")
    if os.path.isdir(path):
        raise InputError(f"{path}: is a directory, not a CSV file.")
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError as error:
        raise InputError(f"{path}: empty file ({_one_line(error)}).") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise InputError(
            f"{path}: not a readable CSV file: {_one_line(error)}"
        ) from None
    if frame.shape[0] == 0:
        raise InputError(f"{path}: a header but no rows: there is nothing to fit.")
    # Row labels as a person counts them in the file (the library's errors name
    # rows by label): 1 is the first row under the header.
    frame.index = pd.RangeIndex(1, frame.shape[0] + 1)
    return frame


def _model_and_data(args, frame):
    """The model and its data dict, read by the model's own `data_from_frame`
    (whose errors name the column and the rows)."""
    import jax.numpy as jnp

    from spmle import models

    covariates = list(args.covariates or [])
    beta = jnp.zeros(len(covariates)) if covariates else None
    try:
        if args.family == "normal":
            model = models.NormalMeans()
            data = model.data_from_frame(frame, x=args.value, se=args.se)
        elif args.family == "poisson":
            model = models.PoissonMixture(beta=beta)
            data = model.data_from_frame(
                frame, counts=args.value, covariates=covariates, exposure=args.exposure
            )
        else:
            model = models.BinomialMixture(beta=beta)
            data = model.data_from_frame(
                frame, successes=args.value, trials=args.trials, covariates=covariates
            )
    except (KeyError, TypeError, ValueError) as error:
        # "`frame`" in the library's words is the user's file here.
        text = _one_line(error).replace("`frame`", args.data)
        raise InputError(text) from None
    return model, data, covariates


def _posterior_table(frame, posterior):
    """The input rows with the posterior columns appended (renamed on a clash)."""
    import pandas as pd

    names = {
        name: f"posterior_{name}" if name in frame.columns else name
        for name in posterior.columns
    }
    return pd.concat(
        [frame.reset_index(drop=True), posterior.rename(columns=names)], axis=1
    )


def _plot_prior(res, path: Path) -> str | None:
    """Draw F to `path`; a one-line note instead when that is not possible."""
    if not hasattr(res, "plot_mixing"):
        return "this spmle has no Results.plot_mixing: prior.png skipped."
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return (
            "matplotlib is not installed: prior.png skipped (pip install matplotlib)."
        )
    # A bare Figure draws with Agg and leaves pyplot's global state alone.
    figure = Figure(figsize=(6.4, 4.0), layout="constrained")
    ax = figure.subplots()
    res.plot_mixing(ax=ax)
    figure.savefig(path, dpi=120)
    return None


def _npmle(args) -> int:
    _check_npmle_args(args)
    frame = _read_csv(args.data)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {args.out}: exists and is not a directory.")

    import jax

    import spmle

    with jax.enable_x64(True):
        model, data, covariates = _model_and_data(args, frame)
        grid = None
        if args.grid is not None:
            grid = spmle.Grid.automatic(model, data, num=args.grid)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = spmle.fit(model, data, grid, verbose=args.verbose)
            posterior = res.posterior(args.level)
        _relay_warnings(caught)

        prior = res.mixing.frame()
        if res.mixing.num_groups == 1:
            prior = prior.drop(columns="group")
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for name, table in [
            ("prior.csv", prior),
            ("posterior.csv", _posterior_table(frame, posterior)),
        ]:
            table.to_csv(out / name, index=False)
            written.append(name)
        (out / "fit.txt").write_text(res.summary() + "\n")
        written.append("fit.txt")
        note = _plot_prior(res, out / "prior.png")
        if note is None:
            written.append("prior.png")

    _report(args, res, covariates, frame.shape[0], out, written, note)
    return EXIT_OK if res.converged else EXIT_NOT_CONVERGED


def _report(args, res, covariates, n, out, written, note) -> None:
    import numpy as np

    atoms = int((np.asarray(res.mixing.probs) > 1e-10).sum())
    print(f"spmle npmle: {args.family} family, n = {n:,} rows of {args.data}")
    print(f"  grid        {res.grid}")
    print(f"  prior F     {atoms} atoms, mean {float(res.mixing.mean()[0]):.6g}")
    print(f"  loglik      {res.llf:.6f}")
    status = "yes" if res.converged else "NO"
    print(f"  converged   {status} ({res.optimizer_info['status']})")
    if covariates:
        width = max(len(c) for c in covariates)
        print(f"  coefficients (std. errors from the {res.cov_type}):")
        for name, coef, se in zip(
            covariates, res.params.to_numpy(), res.bse.to_numpy(), strict=True
        ):
            print(f"    {name:<{width}}  {coef:+.6g}  ({se:.3g})")
    print(f"  wrote       {', '.join(str(out / name) for name in written)}")
    if note is not None:
        print(f"  note        {note}")


# ------------------------------------------------------------------- npmle-matrix


def _npmle_matrix(args) -> int:
    import jax
    import numpy as np

    from spmle.npmle import RESULTS, MixSQP, npmle

    with jax.enable_x64(True):
        log_lik = np.loadtxt(args.file, delimiter=",", ndmin=2)
        weights = None
        if args.weights is not None:
            weights = np.loadtxt(args.weights, delimiter=",")
        sol = npmle(log_lik, weights=weights, solver=MixSQP(tol=args.tol), throw=False)
        print(f"# status: {RESULTS[sol.result] or 'converged'}")
        print(f"# loglik: {float(sol.loglik):.12g}")
        print(f"# kkt_violation: {float(sol.kkt_violation):.3e}")
        for weight in np.asarray(sol.probs):
            print(f"{weight:.17g}")
    return EXIT_OK if sol.converged else EXIT_NOT_CONVERGED


# ---------------------------------------------------------------------- the parser


def _parser() -> argparse.ArgumentParser:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="spmle",
        description="Semiparametric maximum likelihood in JAX. With no command, "
        "runs the demo.",
        epilog=_EPILOG,
        formatter_class=formatter,
    )
    parser.add_argument("--version", action="version", version=f"spmle {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="simulate a normal-means problem, fit it and plot the estimate",
        description="Simulate a normal-means problem, fit it, print a report and "
        "draw the estimated prior against the truth.",
        epilog=_EPILOG,
        formatter_class=formatter,
    )
    demo.add_argument("--n", type=int, default=2000, help="observations (2000)")
    demo.add_argument("--grid", type=int, default=75, help="grid points (75)")
    demo.add_argument("--seed", type=int, default=0, help="PRNG seed (0)")
    demo.add_argument(
        "--out", default="spmle-demo.png", help="figure file (spmle-demo.png)"
    )

    npmle = sub.add_parser(
        "npmle",
        help="empirical Bayes from a CSV file (normal, Poisson or binomial)",
        description="Fit a mixture with a nonparametric prior to the rows of a CSV "
        "file and write the prior, each row's posterior, the summary and a plot.",
        epilog=_NPMLE_EPILOG + "\n" + _EPILOG,
        formatter_class=formatter,
    )
    npmle.add_argument("data", help="CSV file with a header line, one row per unit")
    npmle.add_argument(
        "--family",
        required=True,
        choices=list(FAMILIES),
        help="normal: value ~ N(v, se^2); poisson: value ~ Poisson(exposure "
        "exp(x'beta + v)); binomial: value ~ Bin(trials, sigmoid(x'beta + v))",
    )
    npmle.add_argument(
        "--value",
        required=True,
        metavar="COL",
        help="the observed column (estimate, count or successes)",
    )
    npmle.add_argument("--se", metavar="COL", help="normal: standard errors (needed)")
    npmle.add_argument("--trials", metavar="COL", help="binomial: trials (needed)")
    npmle.add_argument("--exposure", metavar="COL", help="poisson: exposures (1)")
    npmle.add_argument(
        "--covariates",
        nargs="+",
        metavar="COL",
        help="poisson, binomial: covariate columns (their coefficients are "
        "estimated; no intercept, the prior carries it)",
    )
    npmle.add_argument(
        "--grid",
        type=int,
        metavar="N",
        help="grid points (default: chosen from the data)",
    )
    npmle.add_argument("--out", required=True, metavar="DIR", help="output folder")
    npmle.add_argument(
        "--level",
        type=float,
        default=0.95,
        help="level of the posterior credible intervals (0.95)",
    )
    npmle.add_argument(
        "--verbose",
        action="store_true",
        help="print the optimiser's steps as they happen (with --covariates)",
    )

    matrix = sub.add_parser(
        "npmle-matrix",
        help="NPMLE of an (n, m) log-likelihood matrix in CSV",
        description="The NPMLE of the mixture weights for an (n, m) CSV matrix of "
        "log-likelihoods; prints the status, log-likelihood, KKT violation and the "
        "m weights, one a line.",
        epilog=_EPILOG,
        formatter_class=formatter,
    )
    matrix.add_argument("file", help="CSV file: n rows of m log-likelihoods")
    matrix.add_argument("--weights", help="CSV file of n observation weights")
    matrix.add_argument("--tol", type=float, default=1e-8, help="KKT tolerance")
    return parser


COMMANDS = {"demo": _demo, "npmle": _npmle, "npmle-matrix": _npmle_matrix}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `spmle` command (also `python -m spmle`): returns the
    exit status (0 success, 1 not converged, 2 bad input)."""
    try:
        code = _run(argv)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # The reader went away (`spmle ... | head`): stop quietly, with status 0.
        # Python flushes stdout again at exit and would fail there, so point it
        # at devnull (the recipe in the documentation of the `signal` module).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK


def _run(argv) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version (0) or a usage error (2)
        return exit_.code if isinstance(exit_.code, int) else EXIT_BAD_INPUT
    if args.command is None:
        args = parser.parse_args(["demo"])
    try:
        return COMMANDS[args.command](args)
    except BrokenPipeError:
        raise
    except (KeyError, TypeError, ValueError, OSError) as error:
        # InputError, the library's frame and data errors (they name the column
        # and the rows), pandas' ParserError and EmptyDataError (ValueErrors),
        # a missing or unreadable file.
        print(f"spmle: error: {_one_line(error)}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
