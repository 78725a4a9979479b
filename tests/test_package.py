"""The public API of ``import vidfeat``: cheap to import, and typed for mypy and IDEs."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import vidfeat


def test_import_vidfeat_imports_no_heavy_library() -> None:
    code = (
        "import sys, vidfeat\n"
        "heavy = ('torch', 'dask', 'distributed', 'av')\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & set(heavy)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _type_checking_imports() -> dict[str, str]:
    """name → module of every ``from … import`` under ``if TYPE_CHECKING:`` in vidfeat/__init__."""
    assert vidfeat.__file__ is not None
    tree = ast.parse(Path(vidfeat.__file__).read_text())
    found: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for stmt in node.body:
                assert isinstance(stmt, ast.ImportFrom) and stmt.module, ast.unparse(stmt)
                found.update({alias.name: stmt.module for alias in stmt.names})
    return found


def test_every_public_name_is_imported_for_type_checkers_from_where_it_loads() -> None:
    public: dict[str, str] = vidfeat._PUBLIC
    assert _type_checking_imports() == public
    assert sorted(vidfeat.__all__) == sorted(["__version__", *public])


def test_every_public_name_loads() -> None:
    for name in vidfeat.__all__:
        assert getattr(vidfeat, name) is not None, name
    for name, module in vidfeat._PUBLIC.items():
        assert getattr(vidfeat, name) is getattr(importlib.import_module(module), name)
