"""The extract client never imports torch: it starts in a fraction of a second and leaves the
cores to the workers loading their backbones (vidfeat/pipeline/remote.py)."""

from __future__ import annotations

import subprocess
import sys


def test_the_extract_client_imports_neither_torch_nor_the_engine() -> None:
    code = (
        "import sys\n"
        "import vidfeat.cli, vidfeat.pipeline.runner, vidfeat.pipeline.remote\n"
        "from vidfeat.pipeline import PartTask, run_part\n"
        "heavy = ('torch', 'timm', 'av', 'vidfeat.pipeline.engine')\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
