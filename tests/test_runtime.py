"""The malloc tuning is applied once and is harmless to call again."""

from __future__ import annotations

import sys

import pytest

from vidfeat.runtime import tune_malloc


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt is Linux-only")
def test_tune_malloc_applies_on_glibc() -> None:
    assert tune_malloc() is True
    assert tune_malloc() is True  # idempotent
