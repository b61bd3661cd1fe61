"""`ncseg predict`: a registered model over a folder of micrographs -> masks, overlays, particle tables in nm.

Three steps, one module each: `inputs` checks the files, options and output folder before a model is loaded;
`segment` runs each image through the model once (one set of network passes gives its probability, uncertainty and
out-of-domain reason: a `Segmentation`); `outputs` writes what a microscopist opens from that, without running a
network (a napari widget or an exporter calls the same two). `review` ranks what was written. Each image's outputs
are written as soon as it is done; an unreadable image is reported and skipped, so one bad file never costs the
results of the others. The particle settings come with the model, so a model folder works outside any project.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ncseg import figures
from ncseg.config import ParticleParams
from ncseg.io.images import ImageError, Micrograph, read_image
from ncseg.particles import Particle
from ncseg.predict.inputs import (
    PredictRefusedError,
    check_settings,
    collect_inputs,
    output_collisions,
    particle_settings,
    store_uri,
)
from ncseg.predict.outputs import SUMMARY, instances, read_summary, summary_row, write_image_outputs, write_summary
from ncseg.predict.segment import Segmentation, Segmenter, load_segmenter

__all__ = [
    "SUMMARY",
    "PredictRefusedError",
    "Report",
    "Segmentation",
    "Segmenter",
    "check_settings",
    "collect_inputs",
    "load_segmenter",
    "output_collisions",
    "particle_settings",
    "read_summary",
    "run",
    "store_uri",
]

log = logging.getLogger(__name__)


@dataclass
class Report:
    done: list[dict] = field(default_factory=list)  # one summary row per image
    failed: list[str] = field(default_factory=list)  # "path: problem"
    particles: dict[int, list[Particle]] = field(default_factory=dict)  # per particle class id


def run(
    segmenter: Segmenter,
    files: list[Path],
    out: Path,
    particle_params: ParticleParams,
    *,
    threshold: float | None = None,
    pixel_size_nm: float | None = None,
    save_probability: bool = False,
    rois: bool = False,
    tta: str | None = None,
    on_image: Callable[[Path], None] | None = None,
) -> Report:
    """Segment every file; a file that cannot be read is reported and the others go on. `tta` overrides the
    model's default test-time augmentation, `pixel_size_nm` the files' calibration."""
    report = Report()
    cut = threshold if threshold is not None else segmenter.threshold
    rule = "argmax" if cut is None else f"threshold {cut:g}"
    caption = f"{segmenter.description}, {rule}"  # on every figure: what made it
    for path in files:
        try:
            image = read_image(path)
            if pixel_size_nm is not None:
                image = Micrograph(image.data, pixel_size_nm, image.path)
            seg = segmenter.segment(image, cut, tta)
        except (ImageError, ValueError) as err:
            report.failed.append(str(err) if str(path) in str(err) else f"{path}: {err}")
        else:
            found = instances(seg, particle_params)
            write_image_outputs(out, seg, found, caption, save_probability=save_probability, rois=rois)
            report.done.append(summary_row(seg, found, segmenter.description))
            for k, each in found.items():
                report.particles.setdefault(k, []).extend(each.particles)
            if seg.ood:  # a table cell is easily missed
                log.warning("%s: unlike the model's training data, check its mask: %s", path, seg.ood)
        if on_image:
            on_image(path)
    if report.done:
        write_summary(out / SUMMARY, report.done)
        for k, particles in report.particles.items():
            if segmenter.labels.is_binary:
                figures.size_histogram(out / "size_distribution.png", particles, caption)
            else:
                name = segmenter.labels.names[k]
                figures.size_histogram(out / f"size_distribution_{name}.png", particles, caption, name)
    return report
