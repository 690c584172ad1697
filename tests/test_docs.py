"""The contract in docs/ covers the public API, and the pages the code cites exist."""

import re
import subprocess
from pathlib import Path

import pytest

import fastlmk.ops

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


@pytest.mark.parametrize("name", fastlmk.ops.__all__)
def test_every_public_op_is_specified(name):
    assert re.search(rf"`{name}[(`]", (DOCS / "ops.md").read_text()), f"docs/ops.md does not specify {name}"


def test_cited_pages_exist():
    """Every ``docs/<page>.md`` named in the sources and every relative link between the pages exists."""
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    if not files:
        pytest.skip("not a git checkout")
    cited = set()
    for f in files:
        if f.endswith((".py", ".h", ".cpp", ".cu", ".md", ".toml", ".sh")) and (ROOT / f).is_file():
            text = (ROOT / f).read_text(errors="replace")
            cited |= set(re.findall(r"docs/([a-z_]+\.md)", text))
            if f.startswith("docs/"):
                cited |= set(re.findall(r"\]\(([a-z_]+\.md)\)", text))
    assert cited and not [p for p in cited if not (DOCS / p).is_file()]
