"""Training samples: the augmented images, normalised once, and seeded random crops with albumentations."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ncseg.config import InferenceParams
from ncseg.data.layout import class_map_path, image_path, mask_path, read_manifest
from ncseg.io.images import read_class_map, read_image, read_mask
from ncseg.normalization import intensity_window, views

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # albumentations 2.x asks PyPI for updates at import
import albumentations as A
import cv2


@dataclass(frozen=True)
class Sample:
    name: str
    group: str
    raw: np.ndarray  # the file's pixels, for the classical baseline
    image: np.ndarray  # normalised float32 views, (C, H, W): what the networks see
    mask: np.ndarray  # bool
    pixel_size_nm: float | None
    target: np.ndarray | None = None  # a soft training target in [0, 1] instead of the mask (distillation)
    classes: np.ndarray | None = None  # uint8 class map for the auxiliary head, where the dataset has one


def load_samples(folder: Path, inference: InferenceParams) -> tuple[list[Sample], tuple[float, float] | None]:
    """Every image of an augmented folder, in manifest order, normalised into `inference.normalization`'s views,
    and the dataset-wide intensity window (`inference.dataset_window`'s percentiles) if a view uses it."""
    entries = read_manifest(folder)
    images = [read_image(image_path(folder, e.name)) for e in entries]
    normalization = inference.normalization
    dataset = "dataset" in normalization
    window = intensity_window([im.data for im in images], inference.dataset_window) if dataset else None
    samples = [
        Sample(
            e.name,
            e.group,
            im.data,
            views(im.data, normalization, window),
            read_mask(mask_path(folder, e.name)),
            im.pixel_size_nm,
            classes=_class_map(class_map_path(folder, e.name), im.data.shape),
        )
        for e, im in zip(entries, images, strict=True)
    ]
    return samples, window


def _class_map(path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    return read_class_map(path, shape) if path.exists() else None


def augmentations(crop: int, seed: int, intensity_jitter: float, noise: bool) -> A.Compose:
    """Geometry a microscope does not fix (orientation, mild distortion), detector noise, and — scaled by
    `intensity_jitter` — brightness/contrast/gamma changes. Set the jitter to 0 where the absolute intensity
    is the cue (one dataset-wide normalisation window): jitter would teach the network to ignore it. Switch
    `noise` off where the reference masks were traced on the noisy image itself (thresholded): their edges
    follow that noise, and added noise would teach the network to ignore what the masks follow."""
    reflect = cv2.BORDER_REFLECT_101
    geometry = [
        A.PadIfNeeded(crop, crop, border_mode=reflect),
        A.RandomCrop(crop, crop),
        A.HorizontalFlip(),
        A.VerticalFlip(),
        A.RandomRotate90(),
        A.Affine(scale=(0.9, 1.1), rotate=(-10, 10), shear=(-4, 4), border_mode=reflect, p=0.3),
        A.ElasticTransform(alpha=8, sigma=6, border_mode=reflect, p=0.1),
    ]
    j = intensity_jitter
    intensity = [
        A.RandomBrightnessContrast(brightness_limit=j, contrast_limit=1.5 * j, p=0.5),
        A.RandomGamma(gamma_limit=(100 / (1 + 2.5 * j), 100 * (1 + 2.5 * j)), p=0.3),
    ]
    detector = [A.GaussNoise(std_range=(0.01, 0.05), p=0.3), A.ShotNoise(scale_range=(0.01, 0.05), p=0.2)]
    return A.Compose(geometry + (intensity if j > 0 else []) + (detector if noise else []), seed=seed)


def reseed(compose: A.Compose, seed: int) -> None:
    """Give every transform its own random stream. Albumentations seeds each transform of a Compose with the same
    seed, so transforms that draw alike stay in lockstep: HorizontalFlip and VerticalFlip then always flip
    together, and the crops only ever rotate, never mirror."""
    compose.set_random_seed(seed)
    streams = np.random.SeedSequence(seed).generate_state(len(compose.transforms))
    for transform, stream in zip(compose.transforms, streams, strict=True):
        transform.set_random_seed(int(stream))


class CropBatches(torch.utils.data.Dataset):
    """Batch b of a training run: random augmented crops drawn with a generator seeded by (seed, b).

    A batch depends on nothing but its number, so it is the same whichever DataLoader worker makes it and
    however many workers there are: `train.workers` changes the speed, never the numbers.
    """

    def __init__(
        self,
        samples: list[Sample],
        crop: int,
        out: int,
        seed: int,
        transform: A.Compose,
        size: int,
        n_batches: int,
        classes: bool = False,
        focus: Focus | None = None,
    ) -> None:
        if not samples:
            raise ValueError("no training images in this fold")
        self.samples, self.crop, self.out, self.seed = samples, crop, out, seed
        self.transform, self.size, self.n_batches, self.classes = transform, size, n_batches, classes
        self.focus = focus

    def __len__(self) -> int:
        return self.n_batches

    def __getitem__(self, b: int) -> tuple[torch.Tensor, ...]:
        """(images, targets), and with `classes` the crops' class maps (IGNORE where an image has none)."""
        batch_seed = int(np.random.SeedSequence([self.seed, b]).generate_state(1)[0])
        rng = np.random.default_rng(batch_seed)
        reseed(self.transform, batch_seed)
        images, masks, class_maps = [], [], []
        centre = slice((self.crop - self.out) // 2, (self.crop + self.out) // 2)  # `valid` nets answer for it only
        for index in rng.integers(0, len(self.samples), self.size):
            s = self.samples[index]
            target = s.mask.astype(np.uint8) if s.target is None else s.target.astype(np.float32)
            arrays = {"image": s.image.transpose(1, 2, 0), "mask": target}  # HWC for albumentations
            arrays |= {"masks": [_classes_or_ignore(s)]} if self.classes else {}
            if self.focus is not None and rng.random() < self.focus.fraction:
                arrays = self.focus.window(int(index), arrays, self.crop, (self.crop - self.out) // 2, rng)
            t = self.transform(**arrays)
            images.append(np.clip(t["image"].transpose(2, 0, 1), 0.0, 1.0))
            masks.append(t["mask"][centre, centre])
            class_maps += [t["masks"][0][centre, centre]] if self.classes else []
        x = torch.from_numpy(np.stack(images).astype(np.float32))
        y = torch.from_numpy(np.stack(masks)[:, None].astype(np.float32))
        return (x, y, torch.from_numpy(np.stack(class_maps).astype(np.int64))) if self.classes else (x, y)


class Focus:
    """Crops forced onto the particles, as nnU-Net oversamples the foreground: with probability `fraction` a crop
    is cut around one pixel of a particle class (a class drawn first, then one of its pixels), so a class that
    covers 0.3 % of the pixels (Pt on alumina) is in a third of the crops instead of a few. The window is the
    crop itself, placed so the pixel lies where the network answers (inside its margin); the augmentation then
    only turns and distorts it."""

    def __init__(self, fraction: float, pixels: list[list[np.ndarray]]) -> None:
        self.fraction, self.pixels = fraction, pixels  # per sample, per particle class: flat pixel indices

    @classmethod
    def of(cls, fraction: float, samples: list[Sample], particle_ids: tuple[int, ...], binary: bool) -> Focus | None:
        """Per sample, the flat indices of each particle class's pixels (the mask's for a binary study); None when
        `fraction` is 0, so such a run draws exactly the random numbers it always did."""
        if fraction == 0:
            return None

        def pixels(s: Sample) -> list[np.ndarray]:
            if binary:
                return [_flat(s.mask)]
            return [] if s.classes is None else [_flat(s.classes == k) for k in particle_ids]

        return cls(fraction, [[p for p in pixels(s) if p.size] for s in samples])

    def window(
        self, index: int, arrays: dict[str, Any], crop: int, margin: int, rng: np.random.Generator
    ) -> dict[str, Any]:
        """`arrays` cut to a crop around a particle pixel of sample `index` (left whole where it has none), the
        pixel at least `margin` from the crop's edge (inside what a `valid` network answers for) where the image
        reaches that far: a window is never moved past the image's border."""
        classes = self.pixels[index]
        if not classes:
            return arrays
        flat = classes[rng.integers(len(classes))]
        h, w = arrays["mask"].shape
        y, x = divmod(int(flat[rng.integers(flat.size)]), w)
        inner = max(crop - 2 * margin, 1)
        top = _start(y - margin - int(rng.integers(inner)), crop, h)
        left = _start(x - margin - int(rng.integers(inner)), crop, w)
        cut = (slice(top, top + crop), slice(left, left + crop))
        return {k: [m[cut] for m in v] if k == "masks" else v[cut] for k, v in arrays.items()}


def _flat(where: np.ndarray) -> np.ndarray:
    """Flat pixel indices, int32 where they fit: a binary study's foreground is a fifth of every image."""
    flat = np.flatnonzero(where)
    return flat.astype(np.int32) if where.size < 2**31 else flat


def _start(first: int, crop: int, size: int) -> int:
    """A window's first row (or column) moved inside the image; images smaller than the crop are padded later."""
    return min(max(first, 0), max(size - crop, 0))


IGNORE = 255  # the class of a pixel the auxiliary loss skips: images added without a class map


def _classes_or_ignore(s: Sample) -> np.ndarray:
    return s.classes if s.classes is not None else np.full(s.mask.shape, IGNORE, np.uint8)


def _one_thread(_: int) -> None:
    """A worker prepares batches with one thread: N workers on N cores, not N x N threads fighting."""
    torch.set_num_threads(1)


def batch_loader(batches: CropBatches, workers: int, pin_memory: bool) -> torch.utils.data.DataLoader:
    """Batches in order, prepared ahead by `workers` processes (0: in the training process, as before), pinned
    for non-blocking copies to a GPU."""
    return torch.utils.data.DataLoader(
        batches,
        batch_size=None,  # each item is already a batch
        shuffle=False,
        num_workers=workers,
        pin_memory=pin_memory,
        worker_init_fn=_one_thread if workers else None,
        prefetch_factor=4 if workers else None,
        persistent_workers=False,
    )
