#!/usr/bin/env bash
# The GPU check: the needs_cuda tests and benchmarks/gpu.py on a CUDA machine, in under 8 minutes.
#
#   scripts/gpu-check.sh --prepare   here, where the package index can be reached: the wheels
#                                     vidfeat needs beyond a CUDA PyTorch image, for that
#                                     machine's Python ($GPU_PYTHON, default 3.12), and the
#                                     real-world test videos (made with the ffmpeg binary of
#                                     imageio-ffmpeg, which is too large to carry), into .gpu-check/
#   scripts/gpu-check.sh              there, with .gpu-check/ carried along: installs the wheels
#                                     into /tmp/vidfeat-site (no index, no deps resolved), runs
#                                     the checks, and prints every figure
#
# The machine is expected to have python3 with torch (CUDA), torchvision, timm, numpy, pyarrow,
# h5py, fsspec, rich, typer, pytest, hypothesis and pytest-timeout, as a CUDA PyTorch image has.
set -euo pipefail
cd "$(dirname "$0")/.."
CHECK=.gpu-check
PY=${PYTHON:-python3}
# What vidfeat imports that a CUDA PyTorch image lacks (their own needs included).
CARRIED=(av dask distributed zarr numcodecs google-crc32c donfig pydantic pydantic_core
  annotated-types typing-inspection typing_extensions tblib zict partd locket tornado)

if [[ ${1:-} == --prepare ]]; then
  rm -rf "$CHECK" && mkdir -p "$CHECK/wheels"
  pins=()
  for name in "${CARRIED[@]}"; do  # the versions this checkout is tested with
    pins+=("$name==$(.venv/bin/python -m pip show "$name" | sed -n 's/^Version: //p')")
  done
  platforms=()
  for tag in manylinux_2_34 manylinux_2_31 manylinux_2_28 manylinux_2_27 manylinux_2_24 \
    manylinux_2_17 manylinux2014 manylinux1; do
    platforms+=(--platform "${tag}_x86_64")
  done
  .venv/bin/python -m pip download -q --no-deps --only-binary=:all: --implementation cp \
    --python-version "${GPU_PYTHON:-3.12}" "${platforms[@]}" -d "$CHECK/wheels" "${pins[@]}"
  .venv/bin/python -c "
from pathlib import Path
from tests.pipeline import real_world
real_world.make_all(Path('$CHECK/real-world'))"
  du -sh "$CHECK"
  exit 0
fi

[[ -d $CHECK/wheels ]] || { echo "error: $CHECK/wheels is missing: run $0 --prepare first" >&2; exit 2; }
start=$(date +%s)
"$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/vidfeat-site "$CHECK"/wheels/*.whl
export PYTHONPATH="/tmp/vidfeat-site:$PWD" PYTHONUNBUFFERED=1
export VIDFEAT_REAL_WORLD_DIR="$PWD/$CHECK/real-world" VIDFEAT_CACHE=/tmp/vidfeat-cache
nvidia-smi -L || true
"$PY" -c "import av, torch, vidfeat; print('python', __import__('sys').version.split()[0], \
'torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'av', av.__version__, \
'hwdevices', av.codec.hwaccel.hwdevices_available())"

status=0
# Other library versions than CI's: their deprecation warnings are not failures here.
timeout 180 "$PY" -m pytest -m needs_cuda -p no:cacheprovider -W default -q -rA -s tests/ \
  || status=1
echo "tests done after $(( $(date +%s) - start )) s"
timeout 270 "$PY" benchmarks/gpu.py --kinetics 24 --ucf 24 --long-minutes 1 \
  --cache /tmp/vidfeat-bench || status=1
echo "gpu-check done in $(( $(date +%s) - start )) s, status $status"
exit $status
