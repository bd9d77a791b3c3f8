"""The `spmle` command: the demo, `npmle` on CSV files, `npmle-matrix`, errors."""

import importlib.metadata
import io
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import spmle
from conftest import mean_loglik, normal_means_log_lik
from spmle import cli
from spmle.cli import main


CLI_SOURCE = Path(cli.__file__)


# ------------------------------------------------------------------ CSV fixtures


def _normal_frame(n=120, seed=0):
    rng = np.random.default_rng(seed)
    latent = np.where(rng.uniform(size=n) < 0.3, 2.0, 0.0)
    se = rng.uniform(0.5, 1.5, n)
    return pd.DataFrame(
        {
            "school": [f"s{i}" for i in range(n)],  # a string ID rides along
            "effect": latent + se * rng.normal(size=n),
            "stderr": se,
        }
    )


def _poisson_frame(n=120, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    years = rng.uniform(0.5, 2.0, n)
    latent = np.where(rng.uniform(size=n) < 0.5, 0.0, 1.5)
    return pd.DataFrame(
        {
            "claims": rng.poisson(years * np.exp(0.4 * x + latent)),
            "age": x,
            "years": years,
        }
    )


def _binomial_frame(n=100, seed=2):
    rng = np.random.default_rng(seed)
    cases = rng.integers(5, 40, n)
    latent = np.where(rng.uniform(size=n) < 0.7, -2.0, -0.5)
    return pd.DataFrame(
        {
            "hospital": [f"h{i}" for i in range(n)],
            "deaths": rng.binomial(cases, 1 / (1 + np.exp(-latent))),
            "cases": cases,
        }
    )


def _write(tmp_path, name, frame):
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return str(path)


# ------------------------------------------------------- npmle against the API

CASES = {
    "normal": (
        _normal_frame,
        ["--value", "effect", "--se", "stderr"],
        lambda: spmle.models.NormalMeans(),
        dict(x="effect", se="stderr"),
        [],
    ),
    "poisson": (
        _poisson_frame,
        [
            "--value",
            "claims",
            "--exposure",
            "years",
            "--covariates",
            "age",
            "--verbose",
        ],
        lambda: spmle.models.PoissonMixture(beta=jnp.zeros(1)),
        dict(counts="claims", exposure="years", covariates=["age"]),
        ["age"],
    ),
    "binomial": (
        _binomial_frame,
        ["--value", "deaths", "--trials", "cases"],
        lambda: spmle.models.BinomialMixture(beta=None),
        dict(successes="deaths", trials="cases"),
        [],
    ),
}


@pytest.mark.filterwarnings("ignore::spmle.GridWarning")  # the API's fit, too
@pytest.mark.parametrize("family", list(CASES))
def test_npmle_matches_the_python_api(family, tmp_path, capsys):
    make_frame, options, make_model, columns, covariates = CASES[family]
    frame = make_frame()
    path = _write(tmp_path, f"{family}.csv", frame)
    out = tmp_path / "out"
    grid = ["--grid", "25"] if family == "poisson" else []  # and one automatic
    argv = ["npmle", path, "--family", family, *options, *grid, "--out", str(out)]
    assert main([*argv, "--level", "0.9"]) == 0
    report = capsys.readouterr().out
    assert f"n = {len(frame)} rows" in report and "converged   yes" in report
    assert str(out / "posterior.csv") in report
    for name in covariates:  # coefficients with their standard errors
        assert f"    {name}  " in report

    model = make_model()
    data = type(model).data_from_frame(pd.read_csv(path), **columns)
    support = spmle.Grid.automatic(model, data, num=25) if grid else None
    res = spmle.fit(model, data, support)

    prior = pd.read_csv(out / "prior.csv")
    expected = res.mixing.frame().drop(columns="group")
    assert list(prior.columns) == ["support", "weight", "cdf"]
    np.testing.assert_allclose(prior.to_numpy(), expected.to_numpy(), atol=1e-10)

    posterior = pd.read_csv(out / "posterior.csv")
    expected = res.posterior(0.9)
    assert list(posterior.columns) == [*frame.columns, *expected.columns]
    pd.testing.assert_frame_equal(posterior[frame.columns], frame)  # rows in order
    np.testing.assert_allclose(
        posterior[expected.columns].to_numpy(), expected.to_numpy(), atol=1e-10
    )
    assert ("lfsr" in posterior.columns) == (family == "normal")

    assert (out / "fit.txt").read_text() == res.summary() + "\n"
    if family == "poisson":  # --verbose: the optimiser's steps as they happen
        assert "log-likelihood  |mean grad|" in report
        np.testing.assert_allclose(
            float(report.split(f"    {covariates[0]}  ")[1].split()[0]),
            res.params.iloc[0],
            rtol=1e-5,
        )
    png = out / "prior.png"
    if png.exists():
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert "prior.png skipped" in report


def test_npmle_renames_a_posterior_column_that_clashes(tmp_path, capsys):
    frame = _normal_frame(n=60).rename(columns={"school": "mean"})
    path = _write(tmp_path, "clash.csv", frame)
    out = tmp_path / "out"
    argv = ["npmle", path, "--family", "normal", "--value", "effect", "--se"]
    assert main([*argv, "stderr", "--out", str(out)]) == 0
    columns = list(pd.read_csv(out / "posterior.csv").columns)
    assert columns[:4] == ["mean", "effect", "stderr", "posterior_mean"]


# ---------------------------------------------------------------------- errors


def _error(capsys, argv, code=2):
    assert main(argv) == code
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith("spmle: error: "), err
    return err


NORMAL = ["--family", "normal", "--value", "effect", "--se", "stderr"]


def test_error_missing_file(tmp_path, capsys):
    missing = str(tmp_path / "nope.csv")
    err = _error(capsys, ["npmle", missing, *NORMAL, "--out", str(tmp_path)])
    assert missing in err and "no such file" in err
    err = _error(capsys, ["npmle-matrix", missing])
    assert "nope.csv" in err


def test_error_missing_column(tmp_path, capsys):
    path = _write(tmp_path, "d.csv", _normal_frame(n=10))
    argv = ["npmle", path, "--family", "normal", "--value", "effekt", "--se"]
    err = _error(capsys, [*argv, "stderr", "--out", str(tmp_path / "o")])
    assert "'effekt'" in err and "'effect'" in err and "d.csv" in err
    assert not (tmp_path / "o").exists()


def test_error_non_numeric_value_names_the_row(tmp_path, capsys):
    frame = _normal_frame(n=10)
    frame["effect"] = frame["effect"].astype(object)
    frame.loc[3, "effect"] = "n/a?"  # the 4th row under the header
    path = _write(tmp_path, "d.csv", frame)
    err = _error(capsys, ["npmle", path, *NORMAL, "--out", str(tmp_path / "o")])
    assert "'effect'" in err and "not numeric" in err and "row 4 " in err
    assert "'n/a?'" in err


def test_error_nan_row_names_the_row(tmp_path, capsys):
    frame = _normal_frame(n=10)
    frame.loc[[2, 7], "stderr"] = np.nan  # empty fields in rows 3 and 8
    path = _write(tmp_path, "d.csv", frame)
    err = _error(capsys, ["npmle", path, *NORMAL, "--out", str(tmp_path / "o")])
    assert "'stderr'" in err and "NaN" in err and "rows 3, 8" in err


def test_error_header_only_and_empty_files(tmp_path, capsys):
    header = tmp_path / "header.csv"
    header.write_text("school,effect,stderr\n")
    err = _error(capsys, ["npmle", str(header), *NORMAL, "--out", str(tmp_path)])
    assert "no rows" in err
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    err = _error(capsys, ["npmle", str(empty), *NORMAL, "--out", str(tmp_path)])
    assert "empty file" in err


def test_error_family_options(tmp_path, capsys):
    path = _write(tmp_path, "d.csv", _normal_frame(n=10))
    out = ["--out", str(tmp_path / "o")]
    # A family argparse does not know: a usage error, status 2.
    assert main(["npmle", path, "--family", "gamma", "--value", "x", *out]) == 2
    assert "invalid choice: 'gamma'" in capsys.readouterr().err
    err = _error(capsys, ["npmle", path, "--family", "normal", "--value", "x", *out])
    assert "--se" in err
    err = _error(capsys, ["npmle", path, "--family", "binomial", "--value", "x", *out])
    assert "--trials" in err
    argv = ["npmle", path, "--family", "poisson", "--value", "x", "--se", "s", *out]
    assert "--se is for --family normal" in _error(capsys, argv)
    err = _error(capsys, ["npmle", path, *NORMAL, "--level", "95", *out])
    assert "--level" in err


# ------------------------------------------------------- npmle-matrix (old mode)


def test_npmle_matrix_from_csv(tmp_path, capsys):
    L = normal_means_log_lik(np.random.default_rng(5), 200, np.linspace(-3, 3, 9))
    path = tmp_path / "loglik.csv"
    np.savetxt(path, L, delimiter=",")
    weights = tmp_path / "weights.csv"
    np.savetxt(weights, np.ones(200), delimiter=",")
    assert main(["npmle-matrix", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "# status: converged"
    probs = np.array([float(x) for x in lines if not x.startswith("#")])
    loglik = float(lines[1].split(":")[1])
    assert probs.shape == (9,)
    assert loglik == pytest.approx(200 * mean_loglik(L, probs), rel=1e-12)
    assert main(["npmle-matrix", str(path), "--weights", str(weights)]) == 0
    assert capsys.readouterr().out.splitlines() == lines


# --------------------------------------------------- version, help, pipes, demo


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == (
        f"spmle {importlib.metadata.version('spmle')}"
    )


def test_help_and_version_import_no_jax():
    # cli.py loaded on its own (not through spmle/__init__, which imports JAX):
    # the command's own cost for --help and --version.
    probe = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('cli', {str(CLI_SOURCE)!r})\n"
        "cli = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(cli)\n"
        "codes = [cli.main(a) for a in (['--help'], ['npmle', '--help'], "
        "['npmle-matrix', '--help'], ['--version'])]\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & "
        "{'jax', 'numpy', 'pandas', 'spmle', 'matplotlib'})\n"
        "print('RESULT', codes, heavy)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "exit status:" in result.stdout and "prior.csv" in result.stdout
    assert result.stdout.splitlines()[-1] == "RESULT [0, 0, 0, 0] []"


class _ClosedPipe(io.TextIOBase):
    """A stdout whose reader went away; its file descriptor is a scratch file."""

    def __init__(self, fd):
        self.fd = fd

    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")

    def fileno(self):
        return self.fd


def test_a_closed_pipe_ends_quietly(tmp_path, monkeypatch, capsys):
    with open(tmp_path / "scratch", "w") as scratch:
        monkeypatch.setattr(sys, "stdout", _ClosedPipe(scratch.fileno()))
        assert main(["--help"]) == 0
    assert capsys.readouterr().err == ""


def test_bare_command_runs_the_demo(monkeypatch, capsys):
    demo = pytest.importorskip("spmle._demo")
    calls = []

    class Fitted:
        converged = True

    def fake_run(**kwargs):
        calls.append(kwargs)
        return {"results": Fitted()}

    monkeypatch.setattr(demo, "run", fake_run)
    assert main([]) == 0
    assert calls == [dict(n=2000, grid=75, seed=0, out="spmle-demo.png", show=print)]
    Fitted.converged = False
    assert main(["demo", "--n", "50", "--grid", "9", "--seed", "4"]) == 1
    assert calls[-1] == dict(n=50, grid=9, seed=4, out="spmle-demo.png", show=print)


def test_python_dash_m_runs_the_demo_and_writes_its_figure(tmp_path):
    pytest.importorskip("spmle._demo")
    pytest.importorskip("matplotlib")
    figure = tmp_path / "demo.png"
    argv = ["demo", "--n", "300", "--grid", "21", "--out", str(figure)]
    result = subprocess.run(
        [sys.executable, "-m", "spmle", *argv],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result.stdout.strip()
