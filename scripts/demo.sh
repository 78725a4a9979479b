#!/usr/bin/env bash
# make demo: synthetic dataset → extract (default backbone, LocalCluster) → two heads → leaderboard.
set -euo pipefail
OUT=${1:-demo-data}
VF=.venv/bin/vidfeat
rm -rf "$OUT"
echo "== 1/4 synthetic dataset: 4 classes that differ only in temporal order"
$VF synth "$OUT/videos" --classes 4 --videos-per-class 20 --frames 32 --size 128 --seed 0
echo "== 2/4 extract with the offline default backbone (efficientnet_lite0) on 2 local workers"
$VF extract "$OUT/videos/manifest.csv" --store "$OUT/store" --name demo --frames 16 --workers 2
$VF ls "$OUT/store"
echo "== 3/4 train an LSTM head and the order-blind mean-pool baseline"
$VF train "$OUT/store" demo --head lstm --runs-dir "$OUT/runs"
$VF train "$OUT/store" demo --head meanpool --runs-dir "$OUT/runs"
echo "== 4/4 leaderboard (chance is 0.25: the temporal head should be far above it)"
$VF runs "$OUT/runs"
