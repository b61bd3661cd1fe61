"""Synthetic HAADF-STEM images of CsPb(Cl,I)3 nanocrystals, with exact masks: the study's demo stand-in.

The study's 12 images are not public, so the demo data is simulated from the physics that makes a HAADF image,
one small function per step:

1. placement   cubic NCs lying on a cube face, isolated, in small square patches with ligand gaps, a few overlapping;
2. projection  a cube seen along [001] projects to a square of constant thickness = its edge; overlaps add;
3. contrast    HAADF (Z-contrast) signal ∝ atoms/volume × mean Z^1.7 × projected thickness, so the halide stage
               of the Cl → I exchange changes both the lattice (5.6 → 6.3 Å, Vegard) and the brightness;
4. support     an amorphous-carbon film with low-frequency thickness variation and fine grain;
5. probe       Gaussian blur of the effective probe;
6. scan        per-line position jitter and gain noise (flyback, drift), applied to the mask too, as an
               annotator would trace the distorted image;
7. detector    Poisson shot noise at the dose, gain, dark offset and read noise, written as 16 bit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from ncseg.config import SynthParams
from ncseg.data.layout import PARTICLES, image_path, mask_path
from ncseg.io.images import write_mask, write_tiff
from ncseg.io.tables import write_csv

ATOMIC_NUMBER = {"Cs": 55, "Pb": 82, "Cl": 17, "I": 53, "C": 6}
HAADF_Z_EXPONENT = 1.7
LATTICE_NM = {"Cl": 0.5605, "I": 0.6289}  # cubic CsPbCl3 and alpha-CsPbI3
CARBON_ATOMS_PER_NM3 = 100.3  # amorphous carbon at 2.0 g/cm3
# Fraction of the probe scattered onto the annular detector by 10 nm of CsPbI3: sets the absolute scale.
HAADF_FRACTION_10NM_CSPBI3 = 0.05
DETECTOR_GAIN_ADU = 100.0
DETECTOR_OFFSET_ADU = 1000.0
READ_NOISE_ADU = 30.0
SUPERSAMPLE = 4
MIN_SEPARATION_NM = 1.5  # NCs outside a patch keep at least a ligand shell apart


@dataclass(frozen=True)
class Crystal:
    x_nm: float
    y_nm: float
    edge_nm: float
    angle_deg: float
    patch: int  # -1 when isolated
    overlaps: bool


@dataclass(frozen=True)
class SynthImage:
    name: str
    image: np.ndarray  # uint16 counts
    mask: np.ndarray  # bool
    crystals: list[Crystal]
    iodide_fraction: float


def lattice_nm(iodide_fraction: float) -> float:
    """Vegard's law between the Cl and I end members."""
    return (1 - iodide_fraction) * LATTICE_NM["Cl"] + iodide_fraction * LATTICE_NM["I"]


def perovskite_scattering_per_nm(iodide_fraction: float) -> float:
    """HAADF scattering power of one nm of CsPb(Cl1-xIx)3: 5 atoms per cubic cell times their mean Z^1.7."""
    halide = (1 - iodide_fraction) * ATOMIC_NUMBER["Cl"] ** HAADF_Z_EXPONENT + iodide_fraction * (
        ATOMIC_NUMBER["I"] ** HAADF_Z_EXPONENT
    )
    mean_z = (ATOMIC_NUMBER["Cs"] ** HAADF_Z_EXPONENT + ATOMIC_NUMBER["Pb"] ** HAADF_Z_EXPONENT + 3 * halide) / 5
    return 5 / lattice_nm(iodide_fraction) ** 3 * mean_z


def carbon_scattering_per_nm() -> float:
    return CARBON_ATOMS_PER_NM3 * ATOMIC_NUMBER["C"] ** HAADF_Z_EXPONENT


def _scattering_to_fraction() -> float:
    return HAADF_FRACTION_10NM_CSPBI3 / (10.0 * perovskite_scattering_per_nm(1.0))


class _Occupancy:
    """A coarse raster of where NCs already sit, to place new ones without unintended contact."""

    def __init__(self, field_nm: float, cell_nm: float = 0.5) -> None:
        self.cell = cell_nm
        self.grid = np.zeros((int(np.ceil(field_nm / cell_nm)),) * 2, dtype=bool)

    def _footprint(self, c: Crystal, margin_nm: float) -> tuple[np.ndarray, np.ndarray]:
        half = c.edge_nm / 2 + margin_nm
        reach = half * np.sqrt(2)
        lo = np.floor((np.array([c.y_nm, c.x_nm]) - reach) / self.cell).astype(int).clip(0, self.grid.shape[0])
        hi = np.ceil((np.array([c.y_nm, c.x_nm]) + reach) / self.cell).astype(int).clip(0, self.grid.shape[0])
        yy, xx = np.mgrid[lo[0] : hi[0], lo[1] : hi[1]]
        u, v = _rotate((xx + 0.5) * self.cell - c.x_nm, (yy + 0.5) * self.cell - c.y_nm, c.angle_deg)
        inside = (np.abs(u) <= half) & (np.abs(v) <= half)
        return yy[inside], xx[inside]

    def free(self, c: Crystal, margin_nm: float) -> bool:
        return not self.grid[self._footprint(c, margin_nm)].any()

    def add(self, c: Crystal) -> None:
        self.grid[self._footprint(c, 0.0)] = True


def _rotate(dx: np.ndarray, dy: np.ndarray, angle_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates in the crystal's own frame (u along its first edge)."""
    t = np.deg2rad(angle_deg)
    return dx * np.cos(t) + dy * np.sin(t), -dx * np.sin(t) + dy * np.cos(t)


def _sample_edge(rng: np.random.Generator, mean_nm: float, rel_std: float) -> float:
    return float(max(0.4 * mean_nm, rng.normal(mean_nm, rel_std * mean_nm)))


def _place_patch(
    rng: np.random.Generator, p: SynthParams, mean_edge: float, field: float, patch_id: int, occupancy: _Occupancy
) -> list[Crystal]:
    """A superlattice fragment: rows x cols NCs of near-equal size, aligned, ligand gap between them."""
    rows, cols = (2, 2), (2, 3)
    shape = (int(rng.choice(rows)), int(rng.choice(cols)))
    edge = _sample_edge(rng, mean_edge, p.edge_rel_std)
    gap = rng.uniform(*p.gap_nm)
    angle = rng.uniform(0, 90)
    origin = rng.uniform(0, field, size=2)
    pitch = edge + gap
    members = []
    for r in range(shape[0]):
        for c in range(shape[1]):
            du, dv = (c - (shape[1] - 1) / 2) * pitch, (r - (shape[0] - 1) / 2) * pitch
            t = np.deg2rad(angle)
            x = origin[0] + du * np.cos(t) - dv * np.sin(t)
            y = origin[1] + du * np.sin(t) + dv * np.cos(t)
            own_edge = edge * rng.uniform(0.97, 1.03)  # size-selected neighbours
            members.append(Crystal(float(x), float(y), own_edge, float(angle), patch_id, False))
    inside = all(0 <= m.x_nm < field and 0 <= m.y_nm < field for m in members)
    if inside and all(occupancy.free(m, MIN_SEPARATION_NM) for m in members):
        return members
    return []


def place_crystals(rng: np.random.Generator, p: SynthParams, iodide_fraction: float) -> list[Crystal]:
    field = p.size_px * p.pixel_size_nm
    mean_edge = p.edge_nm * lattice_nm(iodide_fraction) / LATTICE_NM["Cl"]  # the exchange keeps the cell count
    target = round(p.coverage * field**2 / mean_edge**2)
    occupancy = _Occupancy(field)
    crystals: list[Crystal] = []
    patch_id = 0
    for _ in range(200):
        if len(crystals) >= p.patch_fraction * target:
            break
        members = _place_patch(rng, p, mean_edge, field, patch_id, occupancy)
        for m in members:
            occupancy.add(m)
        crystals += members
        patch_id += bool(members)
    n_overlapping = round(p.overlap_fraction * target)
    for _ in range(50 * target):
        if len(crystals) >= target - n_overlapping:
            break
        c = Crystal(
            *rng.uniform(0, field, 2), _sample_edge(rng, mean_edge, p.edge_rel_std), rng.uniform(0, 90), -1, False
        )
        if occupancy.free(c, MIN_SEPARATION_NM):
            occupancy.add(c)
            crystals.append(c)
    return crystals + _overlapping_partners(rng, p, mean_edge, field, crystals, n_overlapping)


def _overlapping_partners(
    rng: np.random.Generator, p: SynthParams, mean_edge: float, field: float, crystals: list[Crystal], n: int
) -> list[Crystal]:
    """NCs resting partly on an isolated neighbour (their projections add up in the image)."""
    isolated = [c for c in crystals if c.patch < 0]
    partners = []
    for host_index in rng.permutation(len(isolated))[:n]:
        host = isolated[host_index]
        direction = rng.uniform(0, 2 * np.pi)
        distance = host.edge_nm * rng.uniform(0.55, 0.8)
        x = float(np.clip(host.x_nm + distance * np.cos(direction), 0, field))
        y = float(np.clip(host.y_nm + distance * np.sin(direction), 0, field))
        partners.append(Crystal(x, y, _sample_edge(rng, mean_edge, p.edge_rel_std), rng.uniform(0, 90), -1, True))
    return partners


def project(crystals: list[Crystal], size_px: int, pixel_nm: float) -> tuple[np.ndarray, np.ndarray]:
    """Projected NC thickness (nm) and covered area fraction per pixel, supersampled against aliasing."""
    n = size_px * SUPERSAMPLE
    step = pixel_nm / SUPERSAMPLE
    thickness = np.zeros((n, n))
    covered = np.zeros((n, n), dtype=bool)
    for c in crystals:
        reach = c.edge_nm / 2 * np.sqrt(2)
        lo = np.floor((np.array([c.y_nm, c.x_nm]) - reach) / step).astype(int).clip(0, n)
        hi = np.ceil((np.array([c.y_nm, c.x_nm]) + reach) / step).astype(int).clip(0, n)
        yy, xx = np.mgrid[lo[0] : hi[0], lo[1] : hi[1]]
        u, v = _rotate((xx + 0.5) * step - c.x_nm, (yy + 0.5) * step - c.y_nm, c.angle_deg)
        inside = (np.abs(u) <= c.edge_nm / 2) & (np.abs(v) <= c.edge_nm / 2)
        thickness[lo[0] : hi[0], lo[1] : hi[1]] += c.edge_nm * inside
        covered[lo[0] : hi[0], lo[1] : hi[1]] |= inside
    shape = (size_px, SUPERSAMPLE, size_px, SUPERSAMPLE)
    return thickness.reshape(shape).mean(axis=(1, 3)), covered.reshape(shape).mean(axis=(1, 3))


def carbon_thickness(rng: np.random.Generator, p: SynthParams) -> np.ndarray:
    """Amorphous carbon: smooth thickness undulation over the field plus nm-scale grain."""
    n = p.size_px
    smooth = ndimage.gaussian_filter(rng.standard_normal((n, n)), sigma=n / 8, mode="wrap")
    grain = ndimage.gaussian_filter(rng.standard_normal((n, n)), sigma=0.4 / p.pixel_size_nm)
    smooth /= smooth.std() or 1.0
    grain /= grain.std() or 1.0
    relative = 1 + p.carbon_variation * smooth + 0.08 * grain
    return p.carbon_thickness_nm * np.clip(relative, 0.2, None)


def scan_distort(rng: np.random.Generator, p: SynthParams, *planes: np.ndarray) -> list[np.ndarray]:
    """Shift each scan line by a slow random walk (drift, jitter); the same shifts for image and mask."""
    n = planes[0].shape[0]
    walk = np.cumsum(rng.normal(0, p.line_jitter_px, n))
    shifts = walk - np.linspace(walk[0], walk[-1], n)  # drift removed: jitter stays
    yy, xx = np.mgrid[0:n, 0 : planes[0].shape[1]].astype(float)
    coords = np.array([yy, xx - shifts[:, None]])
    return [ndimage.map_coordinates(plane, coords, order=1, mode="nearest") for plane in planes]


def detect(rng: np.random.Generator, p: SynthParams, fraction: np.ndarray) -> np.ndarray:
    """Electrons on the detector (Poisson at the dose), line gain noise, gain/offset/read noise -> uint16."""
    electrons_per_px = p.dose_e_per_nm2 * p.pixel_size_nm**2
    line_gain = 1 + rng.normal(0, p.line_gain_std, (fraction.shape[0], 1))
    counts = rng.poisson(np.clip(fraction * line_gain, 0, None) * electrons_per_px)
    adu = DETECTOR_OFFSET_ADU + DETECTOR_GAIN_ADU * counts + rng.normal(0, READ_NOISE_ADU, counts.shape)
    return np.clip(np.rint(adu), 0, np.iinfo(np.uint16).max).astype(np.uint16)


def render(rng: np.random.Generator, p: SynthParams, name: str, iodide_fraction: float) -> SynthImage:
    crystals = place_crystals(rng, p, iodide_fraction)
    nc_thickness, covered = project(crystals, p.size_px, p.pixel_size_nm)
    scattering = (
        nc_thickness * perovskite_scattering_per_nm(iodide_fraction)
        + carbon_thickness(rng, p) * carbon_scattering_per_nm()
    )
    fraction = scattering * _scattering_to_fraction()
    sigma_px = p.probe_fwhm_nm / 2.3548 / p.pixel_size_nm
    fraction = ndimage.gaussian_filter(fraction, sigma_px) if sigma_px > 0 else fraction
    fraction, covered = scan_distort(rng, p, fraction, covered)
    return SynthImage(name, detect(rng, p, fraction), covered >= 0.5, crystals, iodide_fraction)


def generate(p: SynthParams, seed: int) -> list[SynthImage]:
    """The series of images over the exchange (first all-Cl, last all-I), one independent stream each."""
    streams = np.random.SeedSequence(seed).spawn(p.n_images)
    stages = np.linspace(0.0, 1.0, p.n_images) if p.n_images > 1 else np.array([0.0])
    return [
        render(np.random.default_rng(s), p, f"synth_{i:02d}", float(x))
        for i, (s, x) in enumerate(zip(streams, stages, strict=True))
    ]


def write_dataset(images: list[SynthImage], out: Path, pixel_size_nm: float) -> None:
    """images/NAME.tif (16 bit, calibrated), masks/NAME.tif (0/255), particles.csv (the generator's truth)."""
    for item in images:
        write_tiff(image_path(out, item.name), item.image, pixel_size_nm)
        write_mask(mask_path(out, item.name), item.mask, pixel_size_nm)
    fields = ["image", "iodide_fraction", *Crystal.__dataclass_fields__]
    rows = [
        {
            "image": item.name,
            "iodide_fraction": round(item.iodide_fraction, 4),
            **{k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(c).items()},
        }
        for item in images
        for c in item.crystals
    ]
    write_csv(out / PARTICLES, rows, fields)
