"""Shared fixtures: real videos written with PyAV, broken files, tiny models, markers."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from vidfeat.encode import encode_video

INDEX_BITS = 10  # frames up to 1024 carry their own index


def index_frame(i: int, h: int, w: int) -> np.ndarray:
    """A frame whose horizontal bands spell ``i`` in binary (band k white = bit k set).
    Bands span the full width, so a resize and a centre crop of a landscape frame keep them."""
    frame = np.zeros((h, w, 3), np.uint8)
    edges = np.linspace(0, h, INDEX_BITS + 1).astype(int)
    for k in range(INDEX_BITS):
        if (i >> k) & 1:
            frame[edges[k] : edges[k + 1]] = 255
    return frame


def read_index(frame: np.ndarray) -> int:
    """Inverse of index_frame for an RGB (H, W, 3) frame of any size."""
    h = frame.shape[0]
    edges = np.linspace(0, h, INDEX_BITS + 1)
    value = 0
    for k in range(INDEX_BITS):
        row = int((edges[k] + edges[k + 1]) / 2)
        if frame[row, :, :].mean() > 127:
            value |= 1 << k
    return value


def rotate_mp4(src: Path, dst: Path) -> None:
    """Copy an MP4 with the 90°-clockwise display matrix in its track header, as phones write
    portrait video."""
    import struct

    data = bytearray(src.read_bytes())
    identity = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
    pos = data.find(identity, data.find(b"tkhd"))
    assert pos > 0, f"no identity matrix in the tkhd of {src}"
    data[pos : pos + 36] = struct.pack(">9i", 0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x40000000)
    dst.write_bytes(bytes(data))


CODECS = {
    # name: (extension, encoder, pixel format, lossless options)
    "h264": ("mp4", "libx264", "yuv420p", {"qp": "0", "preset": "ultrafast"}),
    "mpeg4": ("avi", "mpeg4", "yuv420p", {"qscale": "1"}),
    "vp9": ("webm", "libvpx-vp9", "yuv420p", {"lossless": "1", "deadline": "realtime"}),
    "h264_10bit": ("mkv", "libx264", "yuv420p10le", {"qp": "0", "preset": "ultrafast"}),
    "ffv1": ("mkv", "ffv1", "yuv444p", {}),
}

MakeVideo = Callable[..., Path]


@pytest.fixture(scope="session", autouse=True)
def _own_vidfeat_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """$VIDFEAT_CACHE (OpenVINO's converted models, batch sizes, catalog copies) in a folder of
    this session, for every process the tests start: never the user's ~/.cache, whose entries
    would outlive the code that made them."""
    saved = os.environ.get("VIDFEAT_CACHE")
    os.environ["VIDFEAT_CACHE"] = str(tmp_path_factory.mktemp("vidfeat-cache-session"))
    yield
    if saved is None:
        os.environ.pop("VIDFEAT_CACHE", None)
    else:
        os.environ["VIDFEAT_CACHE"] = saved


@pytest.fixture
def make_video(tmp_path: Path) -> MakeVideo:
    """make_video(n=24, h=64, w=96, fps=25, codec='h264', lossless=True, gop=None, name=None,
    folder=None) → path. Lossless frames encode their own index (see read_index)."""
    counter = iter(range(10_000))

    def make(
        n: int = 24,
        h: int = 64,
        w: int = 96,
        fps: int = 25,
        codec: str = "h264",
        lossless: bool = True,
        gop: int | None = None,
        name: str | None = None,
        folder: Path | None = None,
    ) -> Path:
        ext, encoder, pix_fmt, options = CODECS[codec]
        path = (folder or tmp_path) / f"{name or f'video{next(counter)}'}.{ext}"
        if lossless:
            frames = (index_frame(i, h, w) for i in range(n))
        else:
            rng = np.random.default_rng(n)
            frames = (rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for _ in range(n))
        encode_video(path, frames, fps, encoder, pix_fmt, options if lossless else None, gop)
        return path

    return make


@pytest.fixture
def broken_files(tmp_path: Path, make_video: MakeVideo) -> dict[str, tuple[Path, str]]:
    """name → (path, expected decode-error kind)."""
    import av

    folder = tmp_path / "broken"
    folder.mkdir()
    good_mp4 = make_video(n=30, codec="h264", name="good_for_truncation").read_bytes()
    files: dict[str, tuple[Path, str]] = {}
    for frac in (0.1, 0.5, 0.9):
        p = folder / f"truncated_{int(frac * 100)}.mp4"
        p.write_bytes(good_mp4[: int(len(good_mp4) * frac)])
        files[p.stem] = (p, "truncated")
    (folder / "empty.mp4").write_bytes(b"")
    files["empty"] = (folder / "empty.mp4", "not_a_video")
    (folder / "random.mp4").write_bytes(np.random.default_rng(0).bytes(4096))
    files["random"] = (folder / "random.mp4", "not_a_video")
    (folder / "text.avi").write_text("this is not a video\n" * 50)
    files["text"] = (folder / "text.avi", "not_a_video")
    audio = folder / "audio_only.mp4"
    with av.open(str(audio), "w") as c:
        s = c.add_stream("aac", rate=16000)
        t = np.zeros((1, 16000), np.float32)
        frame = av.AudioFrame.from_ndarray(t, format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in s.encode(frame):
            c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    files["audio_only"] = (audio, "no_video_stream")
    files["missing"] = (folder / "does_not_exist.mp4", "not_found")
    return files


@pytest.fixture(scope="session")
def s3_bucket(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """s3://vidfeat-test on a moto server on 127.0.0.1 (a real HTTP S3 API, no mocks). The
    AWS_* variables point every process started from here (Dask workers too) at it."""
    import os
    import socket
    import subprocess
    import sys

    import s3fs

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / "s3_server.py"), str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert server.stdout is not None and server.stdout.readline().strip() == "ready"
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "VIDFEAT_CACHE": str(tmp_path_factory.mktemp("vidfeat-cache")),
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        s3fs.S3FileSystem(skip_instance_cache=True).mkdir("vidfeat-test")
        yield "s3://vidfeat-test"
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.terminate()
        server.wait(10)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "needs_cuda" in item.keywords:
            item.add_marker(skip)
