"""predict rebuilds a feature set's values: the engine it may use follows the set's identity."""

from __future__ import annotations

import pytest

from tests.store.helpers import make_spec
from vidfeat.errors import ConfigError
from vidfeat.predict import _engine_for


def test_any_engine_where_every_engine_gives_the_sets_values() -> None:
    spec = make_spec(precision="float32", dtype="float16")
    assert [_engine_for(spec, e) for e in ("auto", "torch", "openvino")] == [
        "auto",
        "torch",
        "openvino",
    ]


@pytest.mark.parametrize(
    ("precision", "dtype", "engine", "needed"),
    [
        ("bfloat16", "float16", "", "torch"),  # made by eager torch before engines existed
        ("bfloat16", "float16", "openvino", "openvino"),
        ("float32", "float32", "openvino", "openvino"),
        ("float32", "float32", "", "torch"),
    ],
)
def test_the_sets_own_engine_where_values_differ(
    precision: str, dtype: str, engine: str, needed: str
) -> None:
    spec = make_spec(precision=precision, dtype=dtype, engine=engine)
    assert _engine_for(spec, "auto") == needed
    assert _engine_for(spec, needed) == needed
    other = "torch" if needed == "openvino" else "openvino"
    with pytest.raises(ConfigError, match=f"--engine {other}: .* use --engine {needed}"):
        _engine_for(spec, other)
