"""DataSplit.batches: normalization, the batched crop/flip, determinism, sharding, resume."""

from __future__ import annotations

import pytest
import torch

from resnet.data import DataSplit
from resnet.data.augment import CropFlipDraws, channel_stats, random_crop_flip
from resnet.errors import ResNetError


def _split(n: int = 37, channels: int = 3, size: int = 8, seed: int = 0) -> DataSplit:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8, generator=generator)
    mean, std = channel_stats(images)
    return DataSplit(name="random", split="train", class_names=[str(i) for i in range(5)], in_chans=channels,
                     image_size=(size, size), mean=mean, std=std, labels=torch.arange(n) % 5, images=images)


def _reference_crop_flip(images: torch.Tensor, draws: CropFlipDraws) -> torch.Tensor:
    """The obvious per-sample version: pad, slice, flip."""
    p = draws.padding
    h, w = images.shape[-2:]
    padded = torch.nn.functional.pad(images, (p, p, p, p))
    out = []
    for i in range(images.shape[0]):
        y, x = int(draws.offset_y[i]), int(draws.offset_x[i])
        crop = padded[i, :, y : y + h, x : x + w]
        out.append(crop.flip(-1) if draws.flip[i] else crop)
    return torch.stack(out)


def test_crop_flip_matches_per_sample_reference() -> None:
    images = torch.randint(0, 256, (64, 3, 7, 9), dtype=torch.uint8)
    draws = CropFlipDraws.draw(64, 4, torch.Generator().manual_seed(1))
    assert draws.flip.any() and not draws.flip.all() and int(draws.offset_x.max()) == 8
    assert torch.equal(random_crop_flip(images, draws), _reference_crop_flip(images, draws))
    # Offset (4, 4) without flip is the identity.
    centre = CropFlipDraws(torch.full((64,), 4), torch.full((64,), 4), torch.zeros(64, dtype=torch.bool), 4)
    assert torch.equal(random_crop_flip(images, centre), images)


def test_batches_are_normalized_images_in_order() -> None:
    split = _split()
    xs, ys = zip(*split.batches(10))
    assert [len(y) for y in ys] == [10, 10, 10, 7] == [len(x) for x in xs]
    x, y = torch.cat(xs), torch.cat(ys)
    mean = torch.tensor(split.mean).view(1, -1, 1, 1)
    std = torch.tensor(split.std).view(1, -1, 1, 1)
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert torch.allclose(x, (split.images.float() / 255 - mean) / std, atol=1e-5)
    assert torch.equal(y, split.labels)
    # Normalized with the training statistics: per channel mean ~0, std ~1.
    assert torch.allclose(x.mean((0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(x.std((0, 2, 3), unbiased=False), torch.ones(3), atol=1e-3)


def test_batches_are_deterministic_per_seed_and_epoch() -> None:
    split = _split()

    def run(**kw: int) -> list[torch.Tensor]:
        return [t for batch in split.batches(8, shuffle=True, augment=True, **kw) for t in batch]

    first = run(epoch=2, seed=5)
    assert all(torch.equal(a, b) for a, b in zip(first, run(epoch=2, seed=5)))
    assert not torch.equal(first[1], run(epoch=3, seed=5)[1])  # new order each epoch
    assert not torch.equal(first[1], run(epoch=2, seed=6)[1])
    # Augmentation changes images, not which images: labels match the un-augmented order.
    plain = [t for batch in split.batches(8, shuffle=True, epoch=2, seed=5) for t in batch]
    assert all(torch.equal(a, b) for a, b in zip(first[1::2], plain[1::2]))
    assert not torch.equal(first[0], plain[0])


@pytest.mark.parametrize("padding", [0, 2])
def test_crop_padding_bounds_the_shift(padding: int) -> None:
    split = _split(n=64)
    plain = torch.cat([x for x, _ in split.batches(64)])
    augmented = torch.cat([x for x, _ in split.batches(64, augment=True, padding=padding)])
    shifts = set()
    for a, img in zip(augmented, plain):
        for flipped in (img, img.flip(-1)):
            for dy in range(-4, 5):
                for dx in range(-4, 5):
                    h, w = img.shape[-2:]
                    ys, xs = slice(max(dy, 0), h + min(dy, 0)), slice(max(dx, 0), w + min(dx, 0))
                    src = flipped[:, slice(max(-dy, 0), h + min(-dy, 0)), slice(max(-dx, 0), w + min(-dx, 0))]
                    if torch.equal(a[:, ys, xs], src):
                        shifts.add(max(abs(dy), abs(dx)))
    assert max(shifts) == padding  # 0: flips only; 2: shifted by up to 2 pixels, never more


def test_start_batch_resumes_exactly() -> None:
    split = _split()
    full = list(split.batches(8, shuffle=True, augment=True, epoch=1, seed=2))
    resumed = list(split.batches(8, shuffle=True, augment=True, epoch=1, seed=2, start_batch=2))
    assert len(resumed) == len(full) - 2
    for (x1, y1), (x2, y2) in zip(full[2:], resumed):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)


@pytest.mark.parametrize("drop_last", [False, True])
def test_ranks_get_disjoint_shards(drop_last: bool) -> None:
    split = _split(n=37)
    world = 3
    seen = []
    for rank in range(world):
        batches = list(split.batches(4, shuffle=True, epoch=4, rank=rank, world_size=world, drop_last=drop_last))
        order = split.order(shuffle=True, epoch=4, rank=rank, world_size=world, drop_last=drop_last)
        if drop_last:
            assert len(batches) == split.num_batches(4, drop_last=True, world_size=world) == 12 // 4
            assert all(len(y) == 4 for _, y in batches)
        else:
            assert len(batches) <= split.num_batches(4, world_size=world)
        seen.append(order[: sum(len(y) for _, y in batches)].tolist())
        assert torch.equal(torch.cat([y for _, y in batches]), split.labels[order[: len(seen[-1])]])
    flat = [i for shard in seen for i in shard]
    assert len(flat) == len(set(flat))  # disjoint
    assert len(flat) == (36 if drop_last else 37)  # and covering (all but the cut tail)


def test_thread_setting_is_the_callers_while_the_model_runs() -> None:
    split = _split()
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seen = [torch.get_num_threads() for _ in split.batches(8, augment=True)]
        assert seen == [2] * split.num_batches(8) and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)


def test_channels_last_and_bad_arguments() -> None:
    split = _split()
    x, _ = next(split.batches(6, channels_last=True, augment=True))
    assert x.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ResNetError, match="batch size"):
        next(split.batches(0))
    with pytest.raises(ResNetError, match="rank 2 is not within world size 2"):
        next(split.batches(4, rank=2, world_size=2))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (runs where one is present)")
def test_batches_on_gpu_match_cpu() -> None:
    split = _split()
    for (xc, yc), (xg, yg) in zip(split.batches(8, shuffle=True, augment=True, seed=1),
                                  split.batches(8, shuffle=True, augment=True, seed=1, device="cuda")):
        assert xg.device.type == "cuda" and yg.device.type == "cuda"
        assert torch.allclose(xc, xg.cpu(), atol=1e-5) and torch.equal(yc, yg.cpu())
