"""How faithfully a mask survives the ImageJ round trip that the correction loop makes.

    python -m benchmarks.roi_round_trip   -> prints a markdown table (the README's numbers)

mask -> particles as `ncseg predict` splits them (watershed, specks under particles.min_area_nm2 dropped) ->
ImageJ RoiSet (`predict --rois`) -> `ncseg data import` of the RoiSets -> mask. Counted against the split particles
(the round trip itself; an ImageJ polygon has no holes, so a hole inside a particle comes back filled) and against
the original mask (adding what predict's speck filter drops): pixels changed, how far from the boundary, and
connected particles merged or split on the way.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from scipy import ndimage
from skimage.measure import label

from benchmarks.common import ROOT
from ncseg.config import Params, load_params
from ncseg.data.importer import import_dataset
from ncseg.data.layout import IMAGES, MASKS, mask_path
from ncseg.data.synth import generate, write_dataset
from ncseg.interop.imagej import write_roiset
from ncseg.io.images import list_images, read_image, read_mask
from ncseg.particles import split

REAL = ROOT.parent / "shared" / "datasets" / "haadf-pt-alumina"
COLUMNS = {
    "images": "images",
    "nc_px": "NC pixels",
    "trip_px": "particles → ROIs → mask: pixels changed",
    "trip_holes": "of those, holes filled",
    "trip_links": "particles merged or split",
    "mask_px": "vs the original mask: pixels changed",
    "far": "of those > 1 px from its boundary",
    "links": "merged or split",
}


def round_trip(images: Path, masks: Path, work: Path, params: Params) -> dict[str, int]:
    (work / "rois").mkdir(parents=True)
    originals, split_labels = {}, {}
    for path in list_images(masks):
        pixel_size = read_image(images / path.name).pixel_size_nm
        originals[path.stem] = read_mask(path)
        split_labels[path.stem] = split(originals[path.stem], pixel_size, params.particles)
        write_roiset(work / "rois" / f"{path.stem}.zip", split_labels[path.stem])
    import_dataset(images, work / "rois", work / "back")
    totals = dict.fromkeys(COLUMNS, 0)
    for name, mask in originals.items():
        back, particles = read_mask(mask_path(work / "back", name)), split_labels[name] > 0
        holes = ndimage.binary_fill_holes(particles) & ~particles
        near = ndimage.binary_dilation(mask & ~ndimage.binary_erosion(mask))
        totals["images"] += 1
        totals["nc_px"] += int(mask.sum())
        totals["trip_px"] += int((back != particles).sum())
        totals["trip_holes"] += int(((back != particles) & holes).sum())
        totals["trip_links"] += _merged_or_split(particles, back)
        totals["mask_px"] += int((back != mask).sum())
        totals["far"] += int(((back != mask) & ~near).sum())
        totals["links"] += _merged_or_split(mask, back)
    return totals


def _merged_or_split(before: np.ndarray, after: np.ndarray) -> int:
    """Connected particles of `after` that cover several of `before`, plus those of `before` cut into several."""
    a, b = label(before, connectivity=1), label(after, connectivity=1)
    both = before & after
    links = {(int(x), int(y)) for x, y in zip(a[both], b[both], strict=True)}
    return 2 * len(links) - len({x for x, _ in links}) - len({y for _, y in links})


def main() -> None:
    params = load_params(ROOT / "params.yaml")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        demo = Path(tmp) / "demo"
        write_dataset(generate(params.data.synth, params.seed), demo, params.data.synth.pixel_size_nm)
        rows.append(("demo (data synth)", round_trip(demo / IMAGES, demo / MASKS, Path(tmp) / "d", params)))
        if REAL.is_dir():
            rows.append(("Pt on alumina (real)", round_trip(REAL / "images", REAL / "masks", Path(tmp) / "r", params)))
    print("| data | " + " | ".join(COLUMNS.values()) + " |")
    print("|---|" + "---:|" * len(COLUMNS))
    for name, totals in rows:
        print(f"| {name} | " + " | ".join(str(totals[key]) for key in COLUMNS) + " |")


if __name__ == "__main__":
    main()
