"""Validation at the boundary: every bad flag or TOML value is one line naming key and value."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vidfeat.cli import app
from vidfeat.errors import ConfigError


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('frames = "8"', r"Invalid --frames \('8'\) in .*x\.toml: must be a valid integer"),
        ("frames = true", r"Invalid --frames \(True\) .*integer"),
        ("frames = 0", r"Invalid --frames \(0\) .*greater than or equal to 1"),
        ("workers = 0", r"Invalid --workers \(0\)"),
        ("timeout = 0", r"Invalid --timeout \(0\)"),
        ("fps = -1.0", r"Invalid --fps \(-1.0\)"),
        ('format = "parquet"', r"Invalid --format \('parquet'\) .*'zarr' or 'hdf5'"),
        ('label_from = "folder"', r"Invalid --label-from \('folder'\)"),
        ("frames = 4\nfps = 1.0", r"--frames and --fps are different sampling modes"),
        ("framez = 4", r"Unknown key.*framez"),
    ],
)
def test_bad_extract_config_values_are_one_line_errors(
    tmp_path: Path, toml: str, message: str
) -> None:
    cfg = tmp_path / "x.toml"
    cfg.write_text(f'inputs = ["{tmp_path}"]\nstore = "{tmp_path / "s"}"\n{toml}\n')
    out = CliRunner().invoke(app, ["extract", "--config", str(cfg), "-q"])
    assert isinstance(out.exception, ConfigError), out.output
    assert "\n" not in str(out.exception)
    assert re.search(message, str(out.exception)), str(out.exception)
    assert not (tmp_path / "s").exists()  # refused before anything is created


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--frames", "0"], r"Invalid --frames \(0\)"),
        (["--workers", "0"], r"Invalid --workers \(0\)"),
        (["--timeout", "0"], r"Invalid --timeout \(0\.0\)"),
        (["--frames", "4", "--fps", "1"], "--frames and --fps are different sampling modes"),
        (["--stride", "2", "--all"], "--stride and --all are different sampling modes"),
    ],
)
def test_bad_extract_flags_are_refused(tmp_path: Path, args: list[str], message: str) -> None:
    out = CliRunner().invoke(app, ["extract", str(tmp_path), "--store", str(tmp_path / "s"), *args])
    assert isinstance(out.exception, ConfigError), out.output
    assert re.search(message, str(out.exception)), str(out.exception)


def test_a_flag_sampling_mode_replaces_the_files(tmp_path: Path) -> None:
    from vidfeat.options import extract_options

    merged = extract_options({"frames", "fps"}, {"fps": 1.0}, {"frames": 8}, "x.toml")
    assert merged == {"frames": 8}


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("epochs = 2.5", r"Invalid epochs \(2\.5\) in .*: must be a valid integer"),
        ("epochs = true", r"Invalid epochs \(True\)"),
        ('lr = "fast"', r"Invalid lr \('fast'\)"),
    ],
)
def test_bad_train_config_values_are_refused(tmp_path: Path, toml: str, message: str) -> None:
    cfg = tmp_path / "t.toml"
    cfg.write_text(toml + "\n")
    out = CliRunner().invoke(app, ["train", str(tmp_path), "fs", "--config", str(cfg)])
    assert isinstance(out.exception, ConfigError), out.output
    assert re.search(message, str(out.exception)), str(out.exception)
