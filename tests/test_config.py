from __future__ import annotations

from pathlib import Path

import pytest

from vidfeat.config import SamplingConfig, TrainConfig, merge_options, read_config_file
from vidfeat.errors import ConfigError


def test_sampling_validation_names_value_and_choices() -> None:
    with pytest.raises(
        ConfigError, match=r"Invalid sampling mode \('every'\). Supported: frames, fps, stride, all"
    ):
        SamplingConfig(mode="every")
    with pytest.raises(ConfigError, match="--frames"):
        SamplingConfig(frames=0)


def test_train_config_rejects_zero_seq_len() -> None:
    with pytest.raises(ConfigError, match=r"--seq-len \(0\)"):
        TrainConfig(store="s", featureset="f", seq_len=0)


def test_precedence_and_unknown_keys(tmp_path: Path) -> None:
    cfg = tmp_path / "x.toml"
    cfg.write_text("frames = 8\nbatch-size = 4\n")
    values = read_config_file(cfg)
    merged = merge_options(
        {"frames", "batch_size", "fps"}, values, {"frames": 32, "fps": None}, "x.toml"
    )
    assert merged == {"frames": 32, "batch_size": 4}
    cfg.write_text("framez = 8\n")
    with pytest.raises(ConfigError, match=r"Unknown key.*framez"):
        merge_options({"frames"}, read_config_file(cfg), {}, "x.toml")
    cfg.write_text("frames = [\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        read_config_file(cfg)
