"""Contract tests: every StoreFS runs the same suite (style.md: StoreTests), on a local folder
and on S3 (a moto server on 127.0.0.1, see tests/s3_server.py).

The contract is what the store relies on (store.py, writer.py, snapshot.py, leases.py,
maintenance.py): create-only records with exactly one winner, staged creates that nobody sees
before they are published, whole replaces, fresh listings, part files and folders published
from a local staging path and read back through ``local_copy``, and deletes that tolerate
missing files.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from vidfeat.errors import StoreError
from vidfeat.store.fs import FsspecFS, LocalFS, StoreFS, open_fs

BACKENDS = ["local", "s3"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def new_fs(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], StoreFS]:
    """new_fs() → a StoreFS on a fresh, empty root that does not exist yet; each call is
    another root. ``open_fs(fs.url)`` opens the same root again (another process would)."""
    if backend == "local":
        return lambda: open_fs(tmp_path / f"root-{uuid.uuid4().hex[:8]}")
    bucket = request.getfixturevalue("s3_bucket")
    return lambda: open_fs(f"{bucket}/root-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def fs(new_fs: Callable[[], StoreFS]) -> StoreFS:
    return new_fs()


def tree(path: Path) -> dict[str, bytes]:
    """Relative path → bytes of every file under ``path``."""
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in path.rglob("*") if p.is_file()}


def visible(fs: StoreFS, rel: str) -> list[str]:
    """The names under ``rel`` that readers look at (temporary files start with a dot)."""
    return [n for n in fs.listdir(rel) if not n.startswith(".")]


def test_open_fs_picks_the_backend(fs: StoreFS, backend: str) -> None:
    assert isinstance(fs, LocalFS if backend == "local" else FsspecFS)
    assert isinstance(fs.url, str) and fs.url
    assert type(open_fs(fs.url)) is type(fs)


# ---------------------------------------------------------------- create-only records


def test_create_exclusive_creates_once_and_the_loser_changes_nothing(fs: StoreFS) -> None:
    assert fs.create_exclusive("a/b/commit.json", b"first")  # parent folders as needed
    assert not fs.create_exclusive("a/b/commit.json", b"second")
    assert fs.read_bytes("a/b/commit.json") == b"first"
    assert visible(fs, "a/b") == ["commit.json"]  # the loser left nothing behind
    assert fs.create_exclusive("a/b/empty.json", b"")  # an empty file is a file
    assert fs.read_bytes("a/b/empty.json") == b""


def test_create_exclusive_loses_to_a_file_made_by_another_client(
    fs: StoreFS,
) -> None:
    other = open_fs(fs.url)  # another process on the same root
    assert other.create_exclusive("commits/p0.json", b"theirs")
    assert not fs.create_exclusive("commits/p0.json", b"ours")
    assert fs.read_bytes("commits/p0.json") == b"theirs"


def test_a_race_to_create_has_exactly_one_winner_whose_bytes_are_kept(fs: StoreFS) -> None:
    n, rounds = 8, 3
    clients = [open_fs(fs.url) for _ in range(n)]  # one per writer, as processes have
    barrier = threading.Barrier(n)
    payloads = [f"writer {i} ".encode() * 1000 for i in range(n)]

    def create(i: int) -> list[bool]:
        won = []
        for r in range(rounds):
            barrier.wait()
            won.append(clients[i].create_exclusive(f"commits/p{r}.json", payloads[i]))
        return won

    with ThreadPoolExecutor(n) as pool:
        by_writer = list(pool.map(create, range(n)))
    for r in range(rounds):
        won = [w[r] for w in by_writer]
        assert won.count(True) == 1, (r, won)
        assert fs.read_bytes(f"commits/p{r}.json") == payloads[won.index(True)]
    assert visible(fs, "commits") == [f"p{r}.json" for r in range(rounds)]


def test_a_staged_create_is_invisible_until_published(fs: StoreFS) -> None:
    staged = fs.stage_exclusive("commits/p0.json", b"record")
    assert not fs.exists("commits/p0.json")
    assert "p0.json" not in fs.listdir("commits")
    with pytest.raises(FileNotFoundError):
        fs.read_bytes("commits/p0.json")
    assert staged.publish()
    assert fs.read_bytes("commits/p0.json") == b"record"
    assert fs.listdir("commits") == ["p0.json"]  # no temporary file left


def test_a_staged_create_loses_to_one_published_first(fs: StoreFS) -> None:
    late = fs.stage_exclusive("commits/p0.json", b"late")
    early = fs.stage_exclusive("commits/p0.json", b"early")
    assert early.publish()
    assert not late.publish()
    assert fs.read_bytes("commits/p0.json") == b"early"
    assert fs.listdir("commits") == ["p0.json"]


def test_a_discarded_staged_create_leaves_nothing(fs: StoreFS) -> None:
    assert fs.create_exclusive("commits/keep.json", b"x")
    fs.stage_exclusive("commits/p0.json", b"record").discard()
    assert not fs.exists("commits/p0.json")
    assert fs.listdir("commits") == ["keep.json"]


# ---------------------------------------------------------------- replace, read, list


def test_replace_writes_whole_and_overwrites(fs: StoreFS) -> None:
    assert fs.create_exclusive("writers/lease.json", b"old and longer")
    fs.replace("writers/lease.json", b"new")
    assert fs.read_bytes("writers/lease.json") == b"new"
    assert fs.listdir("writers") == ["lease.json"]  # no temporary file left
    # A new file, in a folder that exists (replace is not asked to make folders: on a local
    # folder it does not, on S3 there are none; the store replaces only files it created).
    fs.replace("vidfeat.json", b"{}")
    assert fs.read_bytes("vidfeat.json") == b"{}"


def test_readers_see_the_old_or_the_new_bytes_never_a_mix(fs: StoreFS) -> None:
    versions = [bytes([65 + i]) * 200_000 for i in range(3)]
    assert fs.create_exclusive("marker", versions[0])
    stop = threading.Event()
    seen: list[bytes] = []
    reader_fs = open_fs(fs.url)

    def read() -> None:
        while not stop.is_set():
            seen.append(reader_fs.read_bytes("marker"))

    thread = threading.Thread(target=read)
    thread.start()
    try:
        for i in range(12):
            fs.replace("marker", versions[i % 3])
    finally:
        stop.set()
        thread.join()
    assert seen and all(data in versions for data in seen)


def test_missing_files_raise_file_not_found(fs: StoreFS) -> None:
    assert fs.create_exclusive("commits/p0.json", b"x")
    for read in (
        lambda: fs.read_bytes("commits/p1.json"),
        lambda: fs.read_many(["commits/p0.json", "commits/p1.json"]),
        lambda: fs.age_s("commits/p1.json"),
        lambda: fs.local_copy("parts/p1-0.h5"),
        lambda: fs.local_copy("parts/p1-0.zarr"),
    ):
        with pytest.raises(FileNotFoundError):
            read()
    assert not fs.exists("commits/p1.json")
    assert not fs.exists("nothing/here")


def test_read_many_returns_the_files_in_the_order_asked(fs: StoreFS) -> None:
    names = [f"commits/p{i}.json" for i in range(5)]
    for i, name in enumerate(names):
        assert fs.create_exclusive(name, f"record {i}".encode())
    asked = names[::-1] + names[:1]
    assert fs.read_many(asked) == [fs.read_bytes(name) for name in asked]
    assert fs.read_many([]) == []


def test_listdir_names_files_and_folders_directly_under_sorted(fs: StoreFS) -> None:
    assert fs.listdir("") == []  # a root that does not exist yet
    assert fs.listdir("featuresets") == []  # a folder that does not exist
    for rel in ("fs/commits/b.json", "fs/commits/a.json", "fs/parts/p0-1.zarr/c/0", "fs/x"):
        assert fs.create_exclusive(rel, b"1")
    assert fs.listdir("") == ["fs"]
    assert fs.listdir("fs") == ["commits", "parts", "x"]
    assert fs.listdir("fs/commits") == ["a.json", "b.json"]
    assert fs.listdir("fs/parts") == ["p0-1.zarr"]  # a folder once, not its files


def test_listings_are_never_cached(fs: StoreFS) -> None:
    other = open_fs(fs.url)
    assert fs.listdir("commits") == []
    assert not fs.exists("commits/p0.json")
    assert other.create_exclusive("commits/p0.json", b"x")
    assert fs.listdir("commits") == ["p0.json"]
    assert fs.exists("commits/p0.json")
    other.remove("commits/p0.json")
    assert fs.listdir("commits") == []
    assert not fs.exists("commits/p0.json")


def test_exists_for_files_and_folders(fs: StoreFS) -> None:
    assert fs.create_exclusive("fs/parts/p0-1.zarr/zarr.json", b"{}")
    assert fs.exists("fs/parts/p0-1.zarr/zarr.json")
    assert fs.exists("fs/parts/p0-1.zarr")
    assert fs.exists("fs")
    assert not fs.exists("fs/parts/p0-2.zarr")


# ---------------------------------------------------------------- deletes


def test_remove_deletes_files_and_whole_trees_and_tolerates_missing(fs: StoreFS) -> None:
    for rel in ("fs/parts/p0-1.zarr/zarr.json", "fs/parts/p0-1.zarr/values/c/0/0", "fs/a.json"):
        assert fs.create_exclusive(rel, b"1")
    fs.remove("fs/a.json")
    assert not fs.exists("fs/a.json")
    fs.remove("fs/parts/p0-1.zarr")
    assert not fs.exists("fs/parts/p0-1.zarr")
    assert not fs.exists("fs/parts/p0-1.zarr/values/c/0/0")
    assert visible(fs, "fs/parts") == []
    fs.remove("fs/parts/p0-1.zarr")  # missing: fine
    fs.remove("never/was")
    assert fs.create_exclusive("fs/a.json", b"again")  # a removed name can be created again
    assert fs.read_bytes("fs/a.json") == b"again"


# ---------------------------------------------------------------- parts: stage, publish, copy


@pytest.mark.parametrize("suffix", [".h5", ".parquet"])
def test_a_file_staged_and_published_reads_back(fs: StoreFS, suffix: str) -> None:
    rel = f"fs/parts/p0-abc{suffix}"
    staged = fs.staging_path(rel)
    staged.parent.mkdir(parents=True, exist_ok=True)  # the caller makes the folder
    data = bytes(range(256)) * 1000
    staged.write_bytes(data)
    fs.publish(rel, staged)
    assert fs.exists(rel)
    assert fs.listdir("fs/parts") == [f"p0-abc{suffix}"]
    assert fs.read_bytes(rel) == data
    assert fs.disk_usage(rel) == len(data)
    local = fs.local_copy(rel)
    assert local.is_file() and local.read_bytes() == data
    assert open_fs(fs.url).local_copy(rel).read_bytes() == data  # another client


def test_a_folder_staged_and_published_reads_back_whole(fs: StoreFS) -> None:
    rel = "fs/parts/p0-abc.zarr"
    staged = fs.staging_path(rel)
    files = {"zarr.json": b"{}", "values/zarr.json": b"{1}", "values/c/0/0": b"\x00" * 5000}
    for name, data in files.items():
        (staged / name).parent.mkdir(parents=True, exist_ok=True)
        (staged / name).write_bytes(data)
    fs.publish(rel, staged)
    assert fs.listdir("fs/parts") == ["p0-abc.zarr"]
    assert fs.listdir(rel) == ["values", "zarr.json"]
    assert fs.read_bytes(f"{rel}/values/c/0/0") == files["values/c/0/0"]
    assert fs.disk_usage(rel) == sum(map(len, files.values()))
    local = fs.local_copy(rel)
    assert local.is_dir() and tree(local) == files
    assert tree(fs.local_copy(rel)) == files  # again: the same immutable bytes
    assert tree(open_fs(fs.url).local_copy(rel)) == files  # another client


def test_staging_paths_of_two_attempts_do_not_collide(fs: StoreFS) -> None:
    a, b = fs.staging_path("fs/parts/p0-a.h5"), fs.staging_path("fs/parts/p0-b.h5")
    assert a != b
    for path, data in ((a, b"a"), (b, b"b")):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    fs.publish("fs/parts/p0-b.h5", b)
    fs.publish("fs/parts/p0-a.h5", a)
    assert fs.read_many(["fs/parts/p0-a.h5", "fs/parts/p0-b.h5"]) == [b"a", b"b"]


def test_disk_usage_of_missing_is_zero(fs: StoreFS) -> None:
    assert fs.disk_usage("fs/parts/p9-0.zarr") == 0


# ---------------------------------------------------------------- ages (leases, gc)


def test_age_is_the_time_since_the_last_write(fs: StoreFS) -> None:
    assert fs.create_exclusive("writers/a.json", b"x")
    assert fs.create_exclusive("parts/p0-1.zarr/zarr.json", b"{}")
    time.sleep(1.1)  # object stores keep modification times to the second
    old = fs.age_s("writers/a.json")
    assert 1.0 <= old < 60
    assert 1.0 <= fs.age_s("parts/p0-1.zarr") < 60  # a folder: its newest file
    fs.replace("writers/a.json", b"refreshed")  # a lease refresh makes it young again
    assert 0 <= fs.age_s("writers/a.json") < old - 0.05


# ---------------------------------------------------------------- check_writable


def test_check_writable_passes_and_leaves_no_probe(fs: StoreFS) -> None:
    fs.check_writable("featuresets")
    assert fs.listdir("featuresets") == []


def test_check_writable_says_where_writing_failed(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    if backend == "local":  # root ignores permissions: a file where a folder must go
        (tmp_path / "a-file").write_bytes(b"")
        fs = open_fs(tmp_path / "a-file" / "store")
    else:
        request.getfixturevalue("s3_bucket")  # the endpoint: a bucket nobody can write to
        fs = open_fs(f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/store")
    with pytest.raises(StoreError, match=r"is not writable .*featuresets"):
        fs.check_writable("featuresets")
