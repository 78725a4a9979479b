from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

from vidfeat import __version__
from vidfeat.cli import app

runner = CliRunner()


def test_help_lists_commands_quickly() -> None:
    start = time.perf_counter()
    res = subprocess.run(
        [sys.executable, "-m", "vidfeat.cli", "--help"], capture_output=True, text=True
    )
    elapsed = time.perf_counter() - start
    assert res.returncode == 0
    for command in ("synth", "ls", "info", "verify", "gc"):
        assert command in res.stdout
    assert elapsed < 5.0  # generous for a loaded CI box; ~0.2 s here
    heavy = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, vidfeat.cli; print(sorted({'torch','dask','av'} & set(sys.modules)))",
        ],
        capture_output=True,
        text=True,
    )
    assert heavy.stdout.strip() == "[]"


def test_version() -> None:
    out = runner.invoke(app, ["--version"])
    assert out.exit_code == 0 and __version__ in out.output


def test_synth_command(tmp_path: Path) -> None:
    out = runner.invoke(
        app,
        [
            "synth",
            str(tmp_path / "d"),
            "--classes",
            "2",
            "--videos-per-class",
            "1",
            "--frames",
            "4",
            "--size",
            "32",
        ],
    )
    assert out.exit_code == 0, out.output
    assert (tmp_path / "d/manifest.csv").exists()
    bad = subprocess.run(
        [sys.executable, "-m", "vidfeat.cli", "synth", str(tmp_path / "e"), "--codec", "nope"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1 and "error: Invalid --codec ('nope')" in bad.stderr
