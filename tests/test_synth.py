import csv
import hashlib
from pathlib import Path

import av
import numpy as np
import pytest

from vidfeat.errors import ConfigError
from vidfeat.synth import PATTERNS, SynthConfig, level_order, make_dataset


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_same_seed_gives_identical_files(tmp_path: Path) -> None:
    cfg = SynthConfig(classes=2, videos_per_class=2, frames=8, size=32, seed=3)
    make_dataset(tmp_path / "a", cfg)
    make_dataset(tmp_path / "b", cfg)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    make_dataset(tmp_path / "c", SynthConfig(classes=2, videos_per_class=2, frames=8, size=32))
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


@pytest.mark.parametrize("codec", ["h264", "mpeg4", "vp9"])
def test_manifest_matches_decodable_files(tmp_path: Path, codec: str) -> None:
    cfg = SynthConfig(classes=3, videos_per_class=2, frames=10, size=48, codec=codec)
    manifest = make_dataset(tmp_path, cfg)
    rows = list(csv.DictReader(manifest.open()))
    files = sorted(
        str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.parent != tmp_path
    )
    assert sorted(r["path"] for r in rows) == files
    assert {r["label"] for r in rows} == set(list(PATTERNS)[:3])
    for r in rows:
        assert Path(r["path"]).parent.name == r["label"]
        with av.open(str(tmp_path / r["path"])) as c:
            frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        assert len(frames) == 10
        assert frames[0].shape == (48, 48, 3)


def test_levels_are_a_permutation_in_every_class() -> None:
    expected = np.linspace(0, 1, 32)
    orders = {name: level_order(name, 32) for name in PATTERNS}
    for order in orders.values():
        np.testing.assert_allclose(np.sort(order), expected)
    as_tuples = {tuple(o) for o in orders.values()}
    assert len(as_tuples) == len(PATTERNS), "every class must have its own order"


def test_classes_have_equal_per_frame_statistics(tmp_path: Path) -> None:
    """The mean frame of each class is the same within tolerance: only order differs."""
    cfg = SynthConfig(classes=4, videos_per_class=12, frames=16, size=32, seed=1)
    manifest = make_dataset(tmp_path, cfg)
    by_class: dict[str, list[np.ndarray]] = {}
    for r in csv.DictReader(manifest.open()):
        with av.open(str(tmp_path / r["path"])) as c:
            frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
        by_class.setdefault(r["label"], []).append(frames.astype(np.float32))
    means = {
        k: np.mean([v.mean(axis=(0, 1, 2)) for v in vids], axis=0) for k, vids in by_class.items()
    }
    hists = {
        k: np.mean([np.histogram(v, bins=16, range=(0, 255))[0] / v.size for v in vids], axis=0)
        for k, vids in by_class.items()
    }
    ref_mean, ref_hist = next(iter(means.values())), next(iter(hists.values()))
    for k in means:
        np.testing.assert_allclose(means[k], ref_mean, atol=6.0, err_msg=k)
        np.testing.assert_allclose(hists[k], ref_hist, atol=0.03, err_msg=k)
    # Temporal order, on the other hand, differs: first-half vs second-half mean brightness.
    halves = {
        k: np.mean([v[: len(v) // 2].mean() - v[len(v) // 2 :].mean() for v in vids])
        for k, vids in by_class.items()
    }
    assert abs(halves["ramp_up"] - halves["ramp_down"]) > 2.0


def test_bad_synth_config_names_the_value() -> None:
    with pytest.raises(ConfigError, match=r"--classes \(9\)"):
        SynthConfig(classes=9)
    with pytest.raises(ConfigError, match="codec"):
        SynthConfig(codec="prores")
