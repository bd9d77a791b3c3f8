"""The `spmle` command: the demo and the CSV entry point."""

import subprocess
import sys

import numpy as np
import pytest

from conftest import mean_loglik, normal_means_log_lik
from spmle.cli import main


def test_demo_recovers_the_mixing_distribution(capsys):
    assert main(["demo", "--n", "20000", "--m", "60", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "status    converged" in out
    mean = float(out.split("mean of F")[1].split()[0])
    assert mean == pytest.approx(-0.3, abs=0.05)  # truth: 0.3*(-2) + 0.2*1.5


def test_npmle_from_csv(tmp_path, capsys):
    L = normal_means_log_lik(np.random.default_rng(5), 200, np.linspace(-3, 3, 9))
    path = tmp_path / "loglik.csv"
    np.savetxt(path, L, delimiter=",")
    assert main(["npmle", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    probs = np.array([float(x) for x in lines if not x.startswith("#")])
    loglik = float(lines[1].split(":")[1])
    assert probs.shape == (9,)
    assert loglik == pytest.approx(200 * mean_loglik(L, probs), rel=1e-12)


def test_python_dash_m_runs_the_demo():
    result = subprocess.run(
        [sys.executable, "-m", "spmle", "demo", "--n", "2000", "--m", "20"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "converged" in result.stdout
