"""Every python block of README.md and docs/*.md runs as written."""

import pathlib
import re

import pytest


ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCKS = [
    pytest.param(block, id=f"{path.name}:{i}")
    for path in DOCS
    for i, block in enumerate(
        re.findall(r"```python\n(.*?)```", path.read_text(), re.S)
    )
]


@pytest.mark.parametrize("block", BLOCKS)
def test_doc_block_runs(block):
    exec(compile(block, "<doc>", "exec"), {"__name__": "__doc_example__"})


def test_readme_has_exactly_two_setup_commands():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"```bash\n(.*?)```", readme, re.S)
    assert len(commands) == 2
    assert "spmle" in commands[0] and "pytest" in commands[1]
