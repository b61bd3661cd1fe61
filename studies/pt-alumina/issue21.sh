#!/bin/bash
# Issue 21: the binary real-data CV with 3 repeats, leak-free groups (cv.leak_threshold 0.9) and the 28 slice groups
# (null), unet4 and Otsu, on one CPU kind, from one pinned checkout. Resumable: finished folds are kept in
# studies/pt-alumina/fold-cache (paths.fold_cache); rerun this script to continue where it stopped.
set -u
cd /work/rd
PIN=${PIN:-/work/pinned}
export PYTHONPATH=$PIN/src PATH=/work/main/.venv/bin:$PATH
S=studies/pt-alumina/params.yaml
M='models={unet4: {kind: unet4, base_channels: 16, dropout: 0.2, padding: same, l2: 0.0, weight_decay: 0.0}, classical-otsu: {kind: classical, sigma_nm: 2.0, min_area_nm2: 50.0}}'
for split in leakfree slices; do
  t=$([ $split = leakfree ] && echo 0.9 || echo null)
  d=studies/pt-alumina/issue21-$split
  [ -f $d/metrics/cv/unet4.json ] && [ -f $d/metrics/cv/classical-otsu.json ] && continue
  echo "start $split $(date -u +%T) $(git -C $PIN rev-parse --short HEAD)"
  ncseg train -p $S -S "$M" -S cv.leak_threshold=$t -S paths.models=$d/models -S paths.metrics=$d/metrics \
    -S paths.plots=$d/plots unet4 classical-otsu
  echo "end $split rc=$? $(date -u +%T)"
done
