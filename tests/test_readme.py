"""The README's code runs: every Python block executes as written (in a scratch folder), every command in a
bash block or an inline ``fastlmk ...`` span parses with the real command line (flags, choices, numbers; the
long runs themselves are covered by tests/test_train.py, test_sht.py and test_cli.py), every script and extra
it names exists, and every dotted ``fastlmk.*`` name it cites resolves."""

from __future__ import annotations

import importlib
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from fastlmk import cli

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"^```(\w+)\n(.*?)^```", README, flags=re.M | re.S)
PYTHON = [code for lang, code in BLOCKS if lang == "python"]
COMMANDS = [part.strip() for lang, code in BLOCKS if lang == "bash" for line in code.splitlines()
            for part in line.split("#", 1)[0].split("&&") if part.strip()]
COMMANDS += [span for span in re.findall(r"`([^`\n]+)`", README) if re.match(r"(fastlmk|python) \S", span)]
NAMES = sorted(set(re.findall(r"`(fastlmk(?:\.[A-Za-z_]\w*)+)", README)))
EXTRAS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def test_the_readme_has_what_this_test_reads():
    assert len(PYTHON) >= 3 and len(COMMANDS) >= 15 and len(NAMES) >= 10
    assert 'pip install . && fastlmk bench' in COMMANDS[0] + " && " + COMMANDS[1]
    assert COMMANDS[2:4] == ['pip install ".[test]"', "pytest"]


@pytest.mark.parametrize("code", PYTHON, ids=[f"block{i}" for i in range(len(PYTHON))])
def test_python_block_runs(code, tmp_path):
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


def _argv(command: str) -> list[str]:
    """The arguments of a README command, placeholders (X0, FILE, ...) replaced by a number."""
    return ["1" if re.fullmatch(r"[A-Z][A-Z0-9]*", a) else a for a in shlex.split(command)]


def _parses(argv: list[str]) -> None:
    """``fastlmk ARGV`` parses (``--help`` exits 0; an unknown flag or a bad value exits 2)."""
    try:
        cli._parser().parse_args(argv)
    except SystemExit as exc:
        assert exc.code == 0, argv


@pytest.mark.parametrize("command", COMMANDS)
def test_command_is_valid(command):
    argv = _argv(command)
    if argv[0] == "pip":
        assert argv[1] == "install" and argv[2] != "torch" or "--index-url" in argv, command
        for target in argv[2:]:
            extras = re.fullmatch(r"\.(?:\[(.*)\])?", target) if not target.startswith("-") else None
            if extras and extras.group(1):
                assert set(extras.group(1).split(",")) <= EXTRAS.keys(), command
    elif argv[0] in ("pytest", "torchrun") or argv[:2] == ["python", "-m"]:
        if "fastlmk.cli" in argv:
            _parses(argv[argv.index("fastlmk.cli") + 1:])
    elif argv[0] == "python":
        assert (ROOT / argv[1]).is_file(), command
    else:
        assert argv[0] == "fastlmk", command
        if len(argv) > 1:
            _parses(argv[1:])


@pytest.mark.parametrize("name", NAMES)
def test_cited_name_resolves(name):
    from fastlmk import _native
    if name.startswith("fastlmk._cuda") and _native.cuda is None:
        pytest.skip("fastlmk._cuda is built only where nvcc is found")
    parts = name.split(".")
    for split in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for attr in parts[split:]:
            obj = getattr(obj, attr)
        return
    pytest.fail(f"{name} does not resolve")


def test_python_m_pytest_works_from_the_root():
    """``python -m pytest`` puts the root on sys.path, where the source folder fastlmk/ would shadow the
    installed package; the root conftest.py takes it off, so collection imports the package (fastlmk.models)."""
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                           "tests/test_docs.py"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "error" not in done.stdout.lower(), done.stdout[-2000:] + done.stderr[-2000:]


def test_importing_the_source_folder_fails_clearly():
    """From the root, ``import fastlmk`` finds the source folder first: with an editable install that is the
    package, after a regular install it is an ImportError saying so, never a silent fallback to the reference."""
    done = subprocess.run([sys.executable, "-c", "import fastlmk.ops, fastlmk.models, fastlmk._C"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 or "imported from the source folder" in done.stderr, done.stderr[-2000:]
