"""The documentation site builds offline in strict mode, API reference included."""

import html
import os
import pathlib
import re
import subprocess
import sys

import pytest


ROOT = pathlib.Path(__file__).resolve().parents[1]

# Every public object that docs/api.md documents, by the anchor mkdocstrings gives.
API_ANCHORS = [
    "spmle.fit",
    "spmle.fit_mle",
    "spmle.npmle.npmle",
    "spmle.npmle.refine_atoms",
    "spmle.npmle.RowwiseLogLik",
    "spmle.profile_loglik",
    "spmle.profile_derivatives",
    "spmle.Results",
    "spmle.MixingDistribution",
    "spmle.Grid",
    "spmle.Groups",
    "spmle.AbstractModel",
    "spmle.AbstractParametricModel",
    "spmle.MixSQP",
    "spmle.EM",
    "spmle.NPMLESolution",
    "spmle.RESULTS",
    "spmle.DenseLikelihood",
    "spmle.RowChunkedLikelihood",
    "spmle.AbstractLikelihoodOperator",
    "spmle.register_covariance",
    "spmle.AbstractCovariance",
    "spmle.CovarianceEstimate",
    "spmle.ConvergenceWarning",
    "spmle.GridWarning",
    "spmle.HessianWarning",
    "spmle.models.NormalMeans",
    "spmle.models.PoissonMixture",
    "spmle.models.BinomialMixture",
    "spmle.models.LinearFactor",
    "spmle.models.PanelLogit",
    "spmle.models.WeibullHazard",
    "spmle.models.RandomSlopes",
    "spmle.compat",
    "spmle.compat.profile_ll",
]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    site_dir = tmp_path_factory.mktemp("docs") / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", site_dir],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return site_dir


def _text(page: pathlib.Path) -> str:
    """The page's visible text, whitespace collapsed."""
    raw = re.sub(r"<[^>]+>", " ", page.read_text())
    return re.sub(r"\s+", " ", html.unescape(raw))


def test_every_nav_page_is_built(site):
    for name in ["models", "profile", "inference", "npmle", "architecture", "api"]:
        assert (site / name / "index.html").is_file(), name
    assert (site / "index.html").is_file()


def test_api_page_documents_the_public_api(site):
    page = (site / "api" / "index.html").read_text()
    missing = [name for name in API_ANCHORS if f'id="{name}"' not in page]
    assert not missing


def test_api_page_renders_signatures_and_docstrings(site):
    text = _text(site / "api" / "index.html")
    # spmle.fit: its signature and the first line of its docstring.
    assert re.search(r"fit \( model0 : AbstractModel , data ,", text)
    assert "Semiparametric maximum likelihood: theta by the profile likelihood" in text
    # spmle.models.NormalMeans: its bases and docstring, from its private module.
    normal_means = text.split(" spmle.models.NormalMeans ", 1)[1][:2000]
    assert "Bases: AbstractModel" in normal_means
    assert "Heteroscedastic normal means" in normal_means
    assert "Parameters:" in text and "Returns:" in text


def test_site_needs_no_network(site):
    for page in site.rglob("*.html"):
        assert "fonts.googleapis.com" not in page.read_text(), page
