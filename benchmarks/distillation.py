"""Distillation (Hinton et al. 2015; for segmentation, Liu et al. 2019): one network trained on the soft
probabilities of an ensemble + test-time-augmentation teacher, for the ensemble's accuracy at one network's cost.
It lives beside the one benchmark that uses it (benchmarks.distill) until a pipeline stage does; the training loop
already takes a sample's soft `target` in place of its mask (ncseg.data.dataset.Sample).

The teacher labels only the images the student is fitted on. The inner-validation images that choose the
student's checkpoint keep their expert masks, and the test images of the fold the student is scored on are seen by
neither: the teacher's networks must be trained on that fold's fit/validation split too (`seed_ensemble`), or a
teacher that saw the test images would pass what it memorised on to the student and inflate its CV score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
from torch import nn

from ncseg.config import TTA, NeuralParams, Params
from ncseg.data.dataset import Sample
from ncseg.inference.tta import predict_tta
from ncseg.training.loop import fit_new_net


def seed_ensemble(
    spec: NeuralParams, fit: list[Sample], val: list[Sample], params: Params, seeds: Sequence[int]
) -> list[nn.Module]:
    """One network per seed on one split: what differs between the members is their initialisation and crops."""
    return [fit_new_net(spec, fit, val, params, seed)[0] for seed in seeds]


def teacher_targets(teacher: Sequence[nn.Module], fit: list[Sample], tta: TTA, params: Params) -> list[Sample]:
    """The fit samples with the teacher's mean probability as their training target (masks kept for scoring)."""
    tiling = params.inference.tiling()
    return [
        replace(s, target=predict_tta(teacher, teacher[0].geometry, s.image, tta, **tiling).astype(np.float32))
        for s in fit
    ]


def distill(
    spec: NeuralParams,
    teacher: Sequence[nn.Module],
    fit: list[Sample],
    val: list[Sample],
    params: Params,
    seed: int,
    tta: TTA,
) -> nn.Module:
    """A student of architecture `spec` fitted on the teacher's soft targets, checkpointed on `val`'s masks."""
    student, _ = fit_new_net(spec, teacher_targets(teacher, fit, tta, params), val, params, seed)
    return student
