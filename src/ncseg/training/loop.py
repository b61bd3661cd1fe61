"""One network, one fold: the configured loss and lr schedule, AdamW, early stopping on inner-validation
Jaccard, best-epoch weights.

The inner-validation images are training-side groups held out of the fold's fit, never the fold's test
images: the checkpoint is chosen without looking at the data it is reported on.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import Progress
from torch import nn

from ncseg.config import NeuralParams, Params, TrainParams, UNet4Params
from ncseg.data.dataset import IGNORE, CropBatches, Focus, Sample, augmentations, batch_loader
from ncseg.data.layout import CLASSES, IMAGES, class_map_path
from ncseg.inference.runtime import autocast, pick_device
from ncseg.inference.tiling import predict_proba
from ncseg.labels import LabelSet
from ncseg.metrics import EpochLog, class_jaccards, jaccard, jaccard_sweep
from ncseg.models.unet import l2_penalty
from ncseg.models.zoo import build_net


def dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    prob = torch.sigmoid(logits)
    inter = (prob * target).sum()
    return 1 - (2 * inter + eps) / (prob.sum() + target.sum() + eps)


def segmentation_loss(t: TrainParams) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """A pixel term plus a region term. BCE keeps per-pixel probabilities calibrated; focal loss (Lin et al. 2017)
    weights the hard pixels at the boundaries; Dice, or the Lovász hinge (Berman et al. 2018, a convex surrogate of
    the Jaccard index itself), keeps the small NC class from being ignored. Lovász alone trains poorly from
    scratch, so it comes with BCE. `focal` alone is a published recipe's, kept to re-create it."""
    from segmentation_models_pytorch.losses import FocalLoss, LovaszLoss

    kind = t.loss
    if kind in ("focal", "focal_dice"):
        focal = FocalLoss(mode="binary", gamma=t.focal_gamma)
        if kind == "focal":
            return focal
        return lambda logits, target: focal(logits, target) + dice_loss(logits, target)
    if kind == "bce_lovasz":
        lovasz = LovaszLoss(mode="binary")
        return lambda logits, target: F.binary_cross_entropy_with_logits(logits, target) + lovasz(logits, target)
    return lambda logits, target: F.binary_cross_entropy_with_logits(logits, target) + dice_loss(logits, target)


def class_loss(t: TrainParams, labels: LabelSet) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The same pixel + region pairs for K softmax outputs: cross-entropy (or focal) weighted by the label set's
    class weights (or `train.class_weights`), plus a multi-class Dice (or Lovász) over the classes, except for
    `focal` alone. Pixels marked IGNORE count in neither."""
    from segmentation_models_pytorch.losses import DiceLoss, LovaszLoss

    kind = t.loss
    weights = torch.tensor(t.class_weights or labels.weights)
    region = (LovaszLoss if kind == "bce_lovasz" else DiceLoss)(mode="multiclass", ignore_index=IGNORE)
    gamma = t.focal_gamma if kind in ("focal", "focal_dice") else 0.0  # 0: plain cross-entropy

    def loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        counted = target != IGNORE
        ce = F.cross_entropy(logits, target, reduction="none", ignore_index=IGNORE)  # 0 where ignored
        w = weights.to(logits.device)[target.clamp(max=len(weights) - 1)] * counted
        pixel = ((1 - torch.exp(-ce)) ** gamma * ce * w).sum() / w.sum().clamp(min=1e-6)
        if kind == "focal" or not counted.any():  # Lovász has no value on no pixels
            return pixel
        return pixel + region(logits, target)

    return loss


def lr_schedule(optimiser: torch.optim.Optimizer, t: TrainParams) -> torch.optim.lr_scheduler.LRScheduler:
    """Stepped once per batch over the planned length; `constant` keeps `train.lr` throughout."""
    total = t.epochs * t.steps_per_epoch
    if t.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=total)
    if t.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=t.lr, total_steps=total)
    return torch.optim.lr_scheduler.ConstantLR(optimiser, factor=1.0, total_iters=0)


def regulariser(net: nn.Module, p: NeuralParams) -> Callable[[], torch.Tensor]:
    """The study's L2 on the U-Net's kernels, in the loss (Keras semantics); nothing extra for smp nets."""
    if isinstance(p, UNet4Params) and p.l2 > 0:
        kernels = net.kernels()
        return lambda: l2_penalty(kernels, p.l2)
    return lambda: torch.zeros(())


def auxiliary_loss(p: NeuralParams, fit: list[Sample]) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None:
    """The class head's loss times `aux_weight`, or None without a head. The classes (e.g. support and Pt within
    the material) tell the shared features what the binary mask merges. Cross-entropy plus a multi-class Dice, as
    for the binary head: Pt is ~0.3 % of the pixels, and Dice keeps a class that rare from being ignored.
    Pixels of images without a class map (IGNORE) count in neither term, even where a batch has no other."""
    if not isinstance(p, UNet4Params) or not p.aux_classes:
        return None
    maps = {s.name: s.classes for s in fit if s.classes is not None}
    if not maps:
        raise ValueError("aux_classes is set but no training image has a class map (classes/ beside images/)")
    too_high = [f"{name} (max {m.max()})" for name, m in sorted(maps.items()) if m.max() >= p.aux_classes]
    if too_high:
        more = f" and {len(too_high) - 5} more" if len(too_high) > 5 else ""
        raise ValueError(
            f"aux_classes={p.aux_classes}, but the class maps (classes/NAME.tif) of {', '.join(too_high[:5])}{more} "
            f"hold classes >= {p.aux_classes}"
        )
    from segmentation_models_pytorch.losses import DiceLoss

    dice = DiceLoss(mode="multiclass", ignore_index=IGNORE)

    def loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        counted = (target != IGNORE).sum().clamp(min=1)
        ce = F.cross_entropy(logits, target, ignore_index=IGNORE, reduction="sum") / counted
        return p.aux_weight * (ce + dice(logits, target))

    return loss


def validate(net: nn.Module, samples: list[Sample], params: Params) -> tuple[float, float, float]:
    """(mean BCE, mean Jaccard at the study threshold, best mean Jaccard over the threshold grid).

    Early stopping watches the last: a fixed threshold reads 0 while a young network's probabilities are
    still below it, and would stop training before it has started to learn.
    """
    if not params.labels.is_binary:
        return _validate_classes(net, samples, params)
    net.eval()
    losses, probs = [], []
    for s in samples:
        prob = predict_proba([net], net.geometry, s.image, **params.inference.tiling())
        target = s.mask.astype(np.float32)
        clipped = np.clip(prob, 1e-6, 1 - 1e-6)
        losses.append(float(-np.mean(target * np.log(clipped) + (1 - target) * np.log(1 - clipped))))
        probs.append(prob)
    net.train()
    masks = [s.mask for s in samples]
    study = float(np.mean([jaccard(p > params.threshold.study, m) for p, m in zip(probs, masks, strict=True)]))
    return float(np.mean(losses)), study, float(jaccard_sweep(probs, masks, params.threshold.grid()).max())


def _validate_classes(net: nn.Module, samples: list[Sample], params: Params) -> tuple[float, float, float]:
    """(mean cross-entropy, and twice the mean foreground Jaccard at the argmax): a K-class net has no threshold to
    tune, so what early stopping watches is the decision the CV scores."""
    net.eval()
    losses, scores = [], []
    for s in samples:
        prob = predict_proba([net], net.geometry, s.image, **params.inference.tiling())
        picked = np.take_along_axis(prob, s.classes[None].astype(np.intp), axis=0)
        losses.append(float(-np.mean(np.log(np.clip(picked, 1e-6, 1.0)))))
        scores.append(np.mean(class_jaccards(prob.argmax(0), s.classes, params.labels.foreground)))
    net.train()
    return float(np.mean(losses)), float(np.mean(scores)), float(np.mean(scores))


def class_targets(samples: list[Sample], labels: LabelSet, folder: Path) -> None:
    """A K-class study trains on class maps: every image of `folder` (the augmented set) needs one, within the
    label set; the first that is not is named by its file."""
    if missing := [s.name for s in samples if s.classes is None]:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise ValueError(
            f"labels has {len(labels.classes)} classes, but {', '.join(missing[:5])}{more} in {folder} have no "
            f"class map ({CLASSES}/NAME.tif beside {IMAGES}/: `ncseg data import --classes`)"
        )
    for s in samples:
        labels.check_map(s.classes, str(class_map_path(folder, s.name)))


def fit_new_net(
    spec: NeuralParams,
    fit: list[Sample],
    val: list[Sample],
    params: Params,
    seed: int,
    on_epoch: Callable[[EpochLog], None] = lambda _: None,
    progress: Progress | None = None,
) -> tuple[nn.Module, list[EpochLog]]:
    """A network initialised from `seed` and trained on `fit` (crops drawn from `seed` too): same seed, same net."""
    torch.manual_seed(seed)
    outputs = params.labels.n_outputs
    net = build_net(spec, len(params.inference.normalization), outputs).to(pick_device(params.train.device))
    return net, train_net(net, spec, fit, val, params, seed, on_epoch, progress)


def train_net(
    net: nn.Module,
    p: NeuralParams,
    fit: list[Sample],
    val: list[Sample],
    params: Params,
    seed: int,
    on_epoch: Callable[[EpochLog], None],
    progress: Progress | None = None,
) -> list[EpochLog]:
    """Train in place with the study's settings and the model's own `train:` keys; on return `net` holds the
    weights of its best inner-validation epoch."""
    t = params.train.for_model(p.train)
    device = next(net.parameters()).device
    crop = net.geometry.fit(t.crop_px)
    transform = augmentations(crop, seed, t.intensity_jitter, t.noise)
    aux, labels = auxiliary_loss(p, fit), params.labels
    if not labels.is_binary:
        class_targets(fit + val, labels, params.paths.augmented)
    batches = CropBatches(
        fit,
        crop,
        crop - 2 * net.geometry.margin,
        seed,
        transform,
        t.batch_size,
        t.epochs * t.steps_per_epoch,
        classes=aux is not None or not labels.is_binary,
        focus=Focus.of(t.oversample, fit, labels.particle_ids, labels.is_binary),
    )
    loader = iter(batch_loader(batches, t.workers, pin_memory=device.type == "cuda"))
    net.to(memory_format=torch.channels_last)  # oneDNN's fast convolution layout (and needed for fast bf16)
    optimiser = torch.optim.AdamW(net.parameters(), lr=t.lr, weight_decay=p.weight_decay)
    penalty = regulariser(net, p)
    criterion = segmentation_loss(t) if labels.is_binary else class_loss(t, labels)
    scheduler = lr_schedule(optimiser, t)
    history: list[EpochLog] = []
    best_score, best_epoch, best_state = -1.0, 0, copy.deepcopy(net.state_dict())
    task = progress.add_task("epochs", total=t.epochs) if progress else None
    net.train()
    for epoch in range(t.epochs):
        losses = []
        for _ in range(t.steps_per_epoch):
            x, y, *classes = next(loader)
            x = x.to(device, memory_format=torch.channels_last, non_blocking=True)
            with autocast(t.precision, device):
                logits, class_logits = net.forward_with_aux(x) if aux else (net(x), None)
            target = y if labels.is_binary else classes[0]
            loss = criterion(logits.float(), target.to(device, non_blocking=True))  # logged: with or without aux
            extra = aux(class_logits.float(), classes[0].to(device, non_blocking=True)) if aux else torch.zeros(())
            optimiser.zero_grad(set_to_none=True)
            (loss + extra + penalty()).backward()
            optimiser.step()
            scheduler.step()
            losses.append(loss.item())
        log = EpochLog(epoch, float(np.mean(losses)), *validate(net, val, params))
        history.append(log)
        on_epoch(log)
        if progress:
            progress.update(task, advance=1, description=f"epoch {epoch + 1} val J={log.val_jaccard_tuned:.3f}")
        if log.val_jaccard_tuned > best_score:
            best_score, best_epoch, best_state = log.val_jaccard_tuned, epoch, copy.deepcopy(net.state_dict())
        elif epoch - best_epoch >= t.patience:
            break
    if progress:
        progress.remove_task(task)
    net.load_state_dict(best_state)
    net.eval()
    return history
