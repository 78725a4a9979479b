"""Extraction with videos and store in a bucket (moto server on 127.0.0.1): two jobs at once,
on different feature sets and on the same feature set with overlapping inputs."""

from __future__ import annotations

import subprocess
import uuid
from collections import Counter

import pytest
import s3fs

from tests.pipeline.cluster import BIN
from vidfeat.store import open_store, verify_store
from vidfeat.synth import SynthConfig, make_dataset

pytestmark = pytest.mark.slow  # end-to-end runs of real processes


@pytest.fixture(scope="module")
def bucket_videos(s3_bucket: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    local = tmp_path_factory.mktemp("s3videos") / "videos"
    make_dataset(local, SynthConfig(classes=2, videos_per_class=4, frames=12, size=64))
    (local / "manifest.csv").unlink()
    url = f"{s3_bucket}/videos-{uuid.uuid4().hex[:6]}"
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    for f in sorted(local.rglob("*.mp4")):
        fs.put_file(str(f), f"{url[5:]}/{f.relative_to(local).as_posix()}")
    return url


def job(inputs: str, store: str, name: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            *(str(BIN / "vidfeat"), "extract", inputs, "--store", store, "--name", name),
            *("--backbone", "tiny", "--frames", "4", "--workers", "1", "--videos-per-part", "2"),
            *("--label-from", "parent", "-q"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(*procs: subprocess.Popen[str]) -> None:
    for p in procs:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err


def test_two_jobs_into_one_bucket(s3_bucket: str, bucket_videos: str) -> None:
    store = f"{s3_bucket}/store-{uuid.uuid4().hex[:6]}"
    # Different feature sets at once.
    finish(job(bucket_videos, store, "a"), job(bucket_videos, store, "b"))
    # The same feature set, overlapping inputs: everything, and a glob of half of it.
    finish(job(bucket_videos, store, "c"), job(f"{bucket_videos}/*/*_000[01].mp4", store, "c"))
    opened = open_store(store, mode="r")
    assert sorted(opened.featuresets()) == ["a", "b", "c"]
    assert verify_store(opened) == []
    for name in ("a", "b", "c"):
        fset = opened.get_featureset(name)
        stored = Counter(v.video_id for c in fset.commits() for v in c.videos)
        # Jobs plan a part from its videos' ids and fingerprints, so overlapping jobs race on
        # the same commits and every video is stored once.
        assert len(stored) == 8 and set(stored.values()) == {1}, stored
        assert fset.load().labels.count("ramp_up") == 4
    c = opened.get_featureset("c")
    ids = c.load().video_ids
    assert len(ids) == len(set(ids)) == 8  # readers see each video exactly once
    assert all(
        uri.startswith("s3://") for uri in (c.catalog().get(v).record.uri for v in c.video_ids())
    )
