"""Pipeline fixtures: the real-world video set (tests/pipeline/real_world.py), made once."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.pipeline import real_world


@pytest.fixture(scope="session")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """name → path of every file in real_world.ALL."""
    return real_world.make_all(tmp_path_factory.mktemp("real-world"))
