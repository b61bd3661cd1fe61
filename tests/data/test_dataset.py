"""Training batches depend on the seed and the batch number only: DataLoader workers change speed, not numbers."""

import albumentations as A
import numpy as np
import torch

from ncseg.data.dataset import CropBatches, Focus, Sample, augmentations, batch_loader, reseed


def _batches(seed: int, n: int = 6) -> CropBatches:
    rng = np.random.default_rng(0)
    samples = []
    for i in range(3):
        image = rng.uniform(0, 1, (1, 96, 96)).astype(np.float32)
        samples.append(Sample(f"s{i}", f"g{i}", image[0], image, image[0] > 0.5, 0.5))
    return CropBatches(samples, 64, 64, seed, augmentations(64, seed, 0.1, True), size=4, n_batches=n)


def _all(loader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(loader)


def test_worker_processes_give_the_same_batches_in_the_same_order_as_the_training_process():
    batches = _batches(seed=5)
    inline, parallel = _all(batch_loader(batches, 0, False)), _all(batch_loader(batches, 2, False))
    assert len(inline) == len(parallel) == 6
    for (x0, y0), (x2, y2) in zip(inline, parallel, strict=True):
        assert torch.equal(x0, x2) and torch.equal(y0, y2)
    assert not torch.equal(inline[0][0], inline[1][0]), "batches differ from one another"


def test_a_batch_depends_on_its_number_not_on_what_came_before_and_the_seed_changes_it():
    batches = _batches(seed=5)
    late_first = batches[3]
    _ = [batches[b] for b in range(3)]
    assert torch.equal(batches[3][0], late_first[0])
    assert not torch.equal(_batches(seed=6)[3][0], late_first[0])
    x, y = late_first
    assert x.shape == (4, 1, 64, 64) and y.shape == (4, 1, 64, 64) and set(np.unique(y.numpy())) <= {0.0, 1.0}


def test_crops_are_mirrored_as_well_as_rotated():
    """Each transform draws from its own stream: with albumentations' shared seed, the flips moved in lockstep and
    no crop was ever a mirror image."""
    batches = _batches(seed=1, n=30)
    image = batches.samples[0].image[0]
    crops = A.Compose([A.HorizontalFlip(), A.VerticalFlip()])
    seen = set()
    for b in range(30):
        reseed(crops, b)
        out = crops(image=image)["image"]
        seen.add((np.array_equal(out, image[:, ::-1]), np.array_equal(out, image[::-1])))
    assert (True, False) in seen and (False, True) in seen, "a flip alone never happened"


def _rare_class_samples() -> list[Sample]:
    """Two 256 px images with one 4x4 px particle each (0.02 % of the pixels) on a support (class 1)."""
    rng = np.random.default_rng(3)
    samples = []
    for i, (y, x) in enumerate([(60, 180), (150, 70)]):
        image = rng.uniform(0, 1, (1, 256, 256)).astype(np.float32)
        classes = np.ones((256, 256), np.uint8)
        classes[y : y + 4, x : x + 4] = 2
        samples.append(Sample(f"s{i}", f"g{i}", image[0], image, classes > 0, 0.5, classes=classes))
    return samples


def _share_with_particle(batches: CropBatches) -> float:
    hits = [(maps == 2).any(axis=(1, 2)) for _, _, maps in (batches[b] for b in range(len(batches)))]
    return float(np.mean(np.concatenate([h.numpy() for h in hits])))


def test_oversampling_puts_a_rare_particle_class_into_the_share_of_crops_asked_for():
    samples = _rare_class_samples()

    def batches(fraction: float, crop: int = 64, out: int = 64) -> CropBatches:
        focus = Focus.of(fraction, samples, particle_ids=(2,), binary=False)
        transform = augmentations(crop, 0, 0.0, False)
        return CropBatches(samples, crop, out, 0, transform, 8, 25, classes=True, focus=focus)

    plain, focused = _share_with_particle(batches(0.0)), _share_with_particle(batches(0.5))
    assert plain < 0.25 and 0.45 < focused < 0.8, (plain, focused)  # 0.5 forced + half of the plain share
    valid = _share_with_particle(batches(1.0, crop=96, out=32))  # a `valid` net answers for the central 32 px only
    assert valid > 0.85, valid


def test_no_oversampling_keeps_no_focus_and_a_focus_changes_the_crops():
    batches = _batches(seed=5)
    assert Focus.of(0.0, batches.samples, particle_ids=(1,), binary=True) is None
    samples = batches.samples
    focused = CropBatches(samples, 64, 64, 5, batches.transform, 4, 6, focus=Focus.of(1.0, samples, (1,), True))
    assert torch.equal(batches[2][0], _batches(seed=5)[2][0]) and not torch.equal(batches[2][0], focused[2][0])
