"""Training batches depend on the seed and the batch number only: DataLoader workers change speed, not numbers."""

import albumentations as A
import numpy as np
import torch

from ncseg.data.dataset import CropBatches, Sample, augmentations, batch_loader, reseed


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
