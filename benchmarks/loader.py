"""How fast batches are prepared: crops/s with 0 (in the training process) and N DataLoader workers.

    python -m benchmarks.loader     # writes the "Data loader" section of benchmarks/results.md

The data are the demo's augmented images (`make repro` first); the settings are the demo schedule (128-px crops,
batch 8) and the real-data study's larger GPU schedule (256-px crops, batch 16). Nothing trains: this is the CPU
side alone, the ceiling of what a GPU can be fed. Median of 3 passes over 24 batches each, after a warm-up that
also starts the workers.
"""

from __future__ import annotations

import os
import statistics
import time

from benchmarks.common import RESULTS, ROOT, cpu_model, table
from ncseg.config import load_params
from ncseg.data.dataset import CropBatches, augmentations, batch_loader, load_samples

SECTION = "## Data loader"
N_BATCHES = 24


def crops_per_s(batches: CropBatches, workers: int) -> float:
    times = []
    for _ in range(4):  # the first pass is the warm-up
        start = time.perf_counter()
        for _ in batch_loader(batches, workers, pin_memory=False):
            pass
        times.append(time.perf_counter() - start)
    return batches.size * len(batches) / statistics.median(times[1:])


def main() -> None:
    params = load_params(ROOT / "params.yaml")
    samples, _ = load_samples(ROOT / params.paths.augmented, params.inference)
    rows = []
    for crop, size in ((params.train.crop_px, params.train.batch_size), (256, 16)):
        batches = CropBatches(samples, crop, crop, 0, augmentations(crop, 0, 0.1, True), size, N_BATCHES)
        base = None
        for workers in (0, 1, 2, 4):
            rate = crops_per_s(batches, workers)
            base = base or rate
            rows.append({"crop": f"{crop} px x {size}", "workers": workers, "rate": rate, "ratio": rate / base})
    text = (
        f"{SECTION}\n\n`python -m benchmarks.loader` on {cpu_model()}, {os.cpu_count()} cores: crops/s prepared "
        "(random crop, flips, affine, elastic, intensity and noise augmentation), median of 3 passes.\n\n"
        + table(rows, {"crop": "crop x batch", "workers": "workers", "rate": "crops/s", "ratio": "× 0 workers"})
        + "\n"
    )
    old = RESULTS.read_text() if RESULTS.exists() else ""
    kept = old.split(SECTION)[0].rstrip()
    RESULTS.write_text((kept + "\n\n" if kept else "") + text)
    print(text)


if __name__ == "__main__":
    main()
