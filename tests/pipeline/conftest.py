"""Pipeline fixtures: the real-world video set (tests/pipeline/real_world.py), made once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.pipeline import real_world


@pytest.fixture(scope="session")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """name → path of every file in real_world.ALL; made by ffmpeg here, or taken from
    $VIDFEAT_REAL_WORLD_DIR (made beforehand by the same recipes, for a machine without the
    ffmpeg binary: scripts/gpu-check.sh)."""
    made = os.environ.get("VIDFEAT_REAL_WORLD_DIR")
    if made:
        out = {name: Path(made) / name for name in real_world.ALL}
        missing = [name for name, path in out.items() if not path.exists()]
        assert not missing, f"$VIDFEAT_REAL_WORLD_DIR={made} lacks {missing}"
        return out
    return real_world.make_all(tmp_path_factory.mktemp("real-world"))
