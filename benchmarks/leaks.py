"""Near-duplicate images: what the leak check finds on the real and the demo data, at which thresholds, and how long
it takes (the README's and ncseg.data.leaks' numbers).

    python -m benchmarks.leaks   -> benchmarks/leaks.md (~6 min on 2 cores, most of it the 2 000 synthetic images)

- real data (../shared/datasets/haadf-pt-alumina, grouped by `source_slice`): the similarity of every pair, the
  pairs across slice groups and the groups left after joining at several thresholds;
- the demo (data.dvc, read from the DVC store without touching the workspace, augmented as `dvc repro` does): its
  only near-copies are its rotated copies, so joining changes no group and no fold;
- 2 000 distinct synthetic images of one kind (`data synth`, 256 px): `ncseg data check`'s time, and their
  largest similarity (distinct images of one specimen kind).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import ROOT, cpu_model, table
from ncseg.config import LEAK_THRESHOLD, load_params
from ncseg.data import leaks
from ncseg.data.dataset import load_samples
from ncseg.data.groups import read_group_table
from ncseg.data.layout import IMAGES
from ncseg.data.rotations import augment
from ncseg.data.synth import generate, write_dataset
from ncseg.io.images import read_image
from ncseg.training.plan import leak_free, plan_repeats

REAL = ROOT.parent / "shared" / "datasets" / "haadf-pt-alumina"
OUT = ROOT / "benchmarks" / "leaks.md"
THRESHOLDS = (0.95, LEAK_THRESHOLD, 0.85, 0.8, 0.75, 0.7)
N_SYNTH = 2000


def timed_check(folder: Path) -> tuple[np.ndarray, dict[str, float]]:
    """`ncseg data check`'s work on one folder, by step: the similarity matrix and the seconds each step took."""
    start = time.perf_counter()
    sigs = leaks.signatures([read_image(p).data for p in leaks.dataset_images(folder)])
    read = time.perf_counter()
    sim = leaks.similarity(sigs)
    done = time.perf_counter()
    return sim, {"read_s": read - start, "pairs_s": done - read, "total_s": done - start}


def real_data() -> list[str]:
    names = [p.stem for p in leaks.dataset_images(REAL / IMAGES)]
    group_of, problems, _ = read_group_table(REAL / "manifest.csv", "source_slice", names)
    if problems:
        raise SystemExit("\n".join(problems))
    groups = [group_of[n] for n in names]
    sim, seconds = timed_check(REAL / IMAGES)
    cross = np.array([[a != b for b in groups] for a in groups]) & ~np.eye(len(names), dtype=bool)
    values = np.sort(sim[np.triu(cross, 1)])[::-1]
    high = values[values > 0.8]
    gap = int(np.argmax(high[:-1] - high[1:]))
    rows, joined = [], ""
    for t in THRESHOLDS:
        found = leaks.join_groups(groups, leaks.near_duplicates(sim, t, among=True), t)
        joined = joined or ("; ".join(" + ".join(j) for j in found.joined) if t == LEAK_THRESHOLD else "")
        sizes = np.unique(found.groups, return_counts=True)[1]
        partnered = int((np.where(cross, sim, -1).max(axis=1) >= t).sum())
        rows.append(
            {
                "t": f"**{t}**" if t == LEAK_THRESHOLD else t,
                "pairs": len(found.pairs),
                "partnered": f"{partnered} of {len(names)}",
                "groups": f"{len(set(groups))} -> {len(sizes)}",
                "sizes": ", ".join(str(n) for n in sorted(sizes, reverse=True)),
            }
        )
    columns = {
        "t": "threshold",
        "pairs": "near-duplicate pairs across slice groups",
        "partnered": "images with one",
        "groups": "groups (slices -> joined)",
        "sizes": "images per joined group",
    }
    return [
        f"### Real data: {len(names)} Pt/alumina patches, {len(set(groups))} slice groups",
        "",
        f"`ncseg data check` on the folder: {seconds['total_s']:.2f} s ({seconds['read_s']:.2f} s reading and "
        f"signatures, {seconds['pairs_s']:.2f} s all {len(names) * (len(names) - 1) // 2} pairs).",
        "",
        f"Similarity of pairs in different slice groups: median {np.median(values):.2f}, 90th percentile "
        f"{np.quantile(values, 0.9):.2f}; the largest gap above 0.8 has no pair between {high[gap + 1]:.3f} and "
        f"{high[gap]:.3f} ({gap + 1} pairs above it).",
        "",
        table(rows, columns),
        "",
        f"Slice groups joined at {LEAK_THRESHOLD}: {joined}.",
    ]


def demo() -> list[str]:
    """The committed demo data, read through DVC's API from the bundled store (the workspace is left alone)."""
    from dvc.api import DVCFileSystem

    params = load_params(ROOT / "params.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        raw, augmented = Path(tmp) / "raw", Path(tmp) / "augmented"
        DVCFileSystem(str(ROOT)).get("data/raw", str(raw), recursive=True)
        entries = augment(raw, augmented, params.augment, params.seed)
        samples, _ = load_samples(augmented, params.inference)
        _, seconds = timed_check(augmented)
    sim = leaks.similarity(leaks.signatures([s.raw for s in samples]))  # in manifest order, as CV compares them
    groups = [e.group for e in entries]
    pairs = [(a, b) for a in range(len(groups)) for b in range(a + 1, len(groups))]
    cross = max(sim[a, b] for a, b in pairs if groups[a] != groups[b])
    rotated = min(sim[a, b] for a, b in pairs if groups[a] == groups[b])
    _, found = leak_free(samples, LEAK_THRESHOLD)
    off = params.model_copy(update={"cv": params.cv.model_copy(update={"leak_threshold": None})})
    same = [s.folds for s in plan_repeats(samples, params)] == [s.folds for s in plan_repeats(samples, off)]
    return [
        f"### Demo data (data.dvc): {len(entries)} images, {len(set(groups))} groups",
        "",
        f"`ncseg data check` on the augmented folder: {seconds['total_s']:.2f} s. Rotated copies and their sources: "
        f"similarity ≥ {rotated:.3f} (same group already). Pairs in different "
        f"groups: at most {cross:.3f}; at {LEAK_THRESHOLD}: {len(found.pairs)} pairs, {len(found.joined)} groups "
        f"joined; the folds with the check on and off are {'identical' if same else 'DIFFERENT'}.",
    ]


def synthetic() -> list[str]:
    params = load_params(ROOT / "params.yaml", [f"data.synth.n_images={N_SYNTH}"])
    with tempfile.TemporaryDirectory() as tmp:
        write_dataset(generate(params.data.synth, params.seed + 1), Path(tmp), params.data.synth.pixel_size_nm)
        load = os.getloadavg()[0]
        sim, seconds = timed_check(Path(tmp))
    distinct = sim[np.triu(np.ones(sim.shape, bool), 1)]
    found = leaks.near_duplicates(sim, LEAK_THRESHOLD, among=True)
    size = params.data.synth.size_px
    return [
        f"### {N_SYNTH} distinct synthetic images of one kind ({size} px, `data synth`)",
        "",
        f"`ncseg data check`'s work: {seconds['total_s']:.0f} s ({seconds['read_s']:.0f} s reading and signatures, "
        f"{seconds['pairs_s']:.0f} s all {len(distinct):,} pairs; 1-min load average {load:.1f} when it started). "
        f"Largest similarity between two of them: {distinct.max():.3f} (median {np.median(distinct):.3f}); pairs "
        f"at {LEAK_THRESHOLD}: {len(found)}.",
    ]


def main() -> None:
    sections = [*(real_data() if REAL.is_dir() else ["Real data: not beside the project, skipped."]), ""]
    sections += [*demo(), "", *synthetic()]
    header = [
        "# Near-duplicate images (python -m benchmarks.leaks)",
        "",
        f"{cpu_model()}, {os.cpu_count()} cores. Similarity: Pearson r of 64 px signatures, best of the 8 dihedral "
        f"turns and shifts up to 10 % (ncseg.data.leaks); default cv.leak_threshold {LEAK_THRESHOLD}.",
        "",
    ]
    OUT.write_text("\n".join(header + sections) + "\n")
    print(OUT.read_text())


if __name__ == "__main__":
    main()
