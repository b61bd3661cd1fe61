"""The study's 12 -> 22 images: lossless quarter-turn rotations of some raw images, with a manifest of sources
(the `augment` stage; the random augmentations of training crops are data/dataset.py's).

The manifest's `group` column is what cross-validation splits on: a rotated copy shares the group of its raw
image (and raw images imported with a group manifest share their slice's group), so no copy of one specimen
region can sit on both sides of a fold.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ncseg.config import AugmentParams
from ncseg.data.groups import read_groups
from ncseg.data.layout import CLASSES, IMAGES, MASKS, Entry, class_map_path, image_path, mask_path, write_manifest
from ncseg.io.atomic import staged_folder
from ncseg.io.images import list_images, read_class_map, read_image, read_mask, write_mask, write_tiff


def plan(names: list[str], groups: dict[str, str], p: AugmentParams, seed: int) -> list[Entry]:
    """Every raw image once, then `n_rotated` of them (chosen by the seed) turned by one of `angles`."""
    if p.n_rotated > len(names):
        raise ValueError(f"augment.n_rotated={p.n_rotated} but only {len(names)} raw images exist")
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(len(names), size=p.n_rotated, replace=False).tolist())
    entries = [Entry(n, n, groups.get(n, n), 0) for n in names]
    for index in chosen:
        angle = int(rng.choice(p.angles))
        source = names[index]
        entries.append(Entry(f"{source}_rot{angle}", source, groups.get(source, source), angle))
    return entries


def augment(raw: Path, out: Path, p: AugmentParams, seed: int) -> list[Entry]:
    """Write out/images, out/masks and out/manifest.csv from raw/images + raw/masks (pairs by name), and
    out/classes from raw/classes where an image has a class map (the auxiliary head's labels)."""
    images = {path.stem: path for path in list_images(raw / IMAGES)}
    masks = {path.stem: path for path in list_images(raw / MASKS)}
    classes = {path.stem: path for path in list_images(raw / CLASSES)} if (raw / CLASSES).is_dir() else {}
    if not images:
        raise FileNotFoundError(f"{raw / IMAGES}: no images to augment")
    unpaired = sorted(set(images) ^ set(masks))
    if unpaired:
        raise ValueError(f"{raw}: images and masks do not pair up: {', '.join(unpaired)}")
    if stray := sorted(set(classes) - set(images)):
        raise ValueError(f"{raw / CLASSES}: class maps without an image: {', '.join(stray)}")
    entries = plan(sorted(images), read_groups(raw), p, seed)
    with staged_folder(out) as staging:  # a failure leaves the previous augmented set, and no staging folder
        for entry in entries:
            image = read_image(images[entry.source])
            mask = read_mask(masks[entry.source])
            k = entry.rotation_deg // 90
            write_tiff(image_path(staging, entry.name), np.rot90(image.data, k), image.pixel_size_nm)
            write_mask(mask_path(staging, entry.name), np.rot90(mask, k), image.pixel_size_nm)
            if entry.source in classes:
                class_map = np.rot90(read_class_map(classes[entry.source], image.data.shape), k)
                write_tiff(class_map_path(staging, entry.name), class_map, image.pixel_size_nm)
        write_manifest(staging, entries)
    return entries
