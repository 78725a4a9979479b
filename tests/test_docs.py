"""The docs cannot drift from the code: every shell session in README.md and docs/ runs here,
Python examples run (or, where they need a SLURM/Kubernetes/GPU cluster, compile), config
examples parse, and the CLI reference in docs/cli.md equals what the CLI generates."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```", re.S | re.M)
# sql: run on a real snapshot with DuckDB by tests/store/test_catalog.py.
RUNNABLE = {"console", "python", "python compile-only", "toml", "yaml", "text", "sql", ""}


def blocks(path: Path) -> list[tuple[str, str]]:
    return [(m.group(1).strip(), m.group(2)) for m in FENCE.finditer(path.read_text())]


def commands(session: str) -> list[tuple[str, int]]:
    """'$ cmd' lines (with '\\' continuations) and their expected exit code ('# exit N')."""
    out: list[tuple[str, int]] = []
    lines = iter(session.splitlines())
    for line in lines:
        if not line.startswith("$ "):
            continue  # printed output, not checked
        cmd = line[2:]
        while cmd.endswith("\\"):
            cmd = cmd[:-1] + next(lines).strip()
        code = re.search(r"#\s*exit (\d+)\s*$", cmd)
        out.append((cmd, int(code.group(1)) if code else 0))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_example_runs(doc: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = os.environ | {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "VIDFEAT_CACHE": str(tmp_path / ".cache"),
        "PYTHONPATH": str(ROOT),
    }
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    for info, code in blocks(doc):
        assert info in RUNNABLE, f"{doc.name}: ```{info} block: use console, python, text…"
        if info == "console":
            for cmd, expected in commands(code):
                done = subprocess.run(
                    cmd,
                    shell=True,
                    cwd=tmp_path,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=300,
                )
                assert done.returncode == expected, (
                    f"{doc.name}: `{cmd}` exited {done.returncode}\n{done.stdout}\n{done.stderr}"
                )
        elif info == "python":
            exec(compile(code, f"{doc.name}:python", "exec"), namespace)
        elif info == "python compile-only":
            compile(code, f"{doc.name}:python", "exec")
        elif info == "toml":
            tomllib.loads(code)
        elif info == "yaml":
            yaml.safe_load(code)


def test_cli_reference_is_current() -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import cli_reference
    finally:
        sys.path.pop(0)
    assert cli_reference.current() == cli_reference.reference(), (
        "docs/cli.md is out of date: run python scripts/cli_reference.py --write"
    )
