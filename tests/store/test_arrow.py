"""The store's arrow helpers: the same values as pyarrow's own conversions, without importing
pandas (which cost every fresh reader 0.3 s)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa

from vidfeat.store import open_store
from vidfeat.store.arrow import from_numpy, from_values, strings, to_list, to_numpy

from .helpers import new_featureset, write_part


def test_round_trips_match_pyarrow() -> None:
    words = ["a", None, "é", "", "a"]
    assert strings(words).to_pylist() == words
    assert from_values([1.5, 2.0], pa.float64()).to_pylist() == [1.5, 2.0]
    assert from_values([True, False, True], pa.bool_()).to_pylist() == [True, False, True]
    flags = np.array([True, False, True, True, False, False, True, False, True])
    assert to_numpy(from_numpy(flags)).tolist() == flags.tolist()
    assert to_numpy(from_numpy(flags).slice(3)).tolist() == flags[3:].tolist()
    numbers = np.arange(10, dtype=np.int64)
    assert to_numpy(pa.chunked_array([from_numpy(numbers)]).slice(2, 5)).tolist() == [2, 3, 4, 5, 6]
    dictionary = pa.chunked_array([strings(words), strings(["b", None])]).dictionary_encode()
    assert to_list(dictionary) == [*words, "b", None]
    assert to_list(dictionary.slice(1, 4)) == words[1:5]
    with_nulls = pa.Array.from_buffers(
        pa.int32(),
        3,
        [
            pa.py_buffer(np.packbits([True, False, True], bitorder="little")),
            pa.py_buffer(np.array([7, 8, 9], np.int32)),
        ],
    )
    assert to_numpy(with_nulls, fill=-1).tolist() == [7, -1, 9]


def test_reading_a_catalog_does_not_import_pandas(tmp_path: Path) -> None:
    fset = new_featureset(open_store(tmp_path))
    write_part(fset, "p0", {"a": 2, "b": 3})
    fset.compact()
    write_part(fset, "p1", {"c": 1}, label="x")  # newer than the snapshot
    code = f"""
import sys
from vidfeat.store import open_store, summarize
reader = open_store({str(tmp_path)!r}, mode="r").get_featureset("fs")
reader.read("a"); reader.load(); reader.done(); summarize(reader); reader.catalog().failures()
assert "pandas" not in sys.modules, "pandas was imported"
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
