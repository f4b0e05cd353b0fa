"""Image folders: layouts, odd modes and sizes, bad files skipped and reported, training still runs."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from resnet.data import load, preprocess_images
from resnet.data import testing as fixtures
from resnet.errors import ResNetError

BAD = ("truncated.png", "truncated.jpg", "empty.png", "fake.jpg", "bomb.png")
ODD = ("rgba.png", "palette.png", "cmyk.jpg", "gray.png", "wide.png", "deep16.png", "lossless.webp", "plain.bmp")


@pytest.fixture
def warnings_logged() -> Iterator[list[str]]:
    """Messages the library reports through the "resnet" logger (whatever else configured it)."""
    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    logger = logging.getLogger("resnet")
    handler, level = Collect(logging.WARNING), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield messages
    logger.removeHandler(handler)
    logger.setLevel(level)


def _encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def _add_bad_and_odd_files(folder: Path) -> None:
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8))
    png, jpg = _encoded(rgb, "PNG"), _encoded(rgb, "JPEG")
    (folder / "truncated.png").write_bytes(png[: len(png) // 2])
    (folder / "truncated.jpg").write_bytes(jpg[: len(jpg) // 2])
    (folder / "empty.png").write_bytes(b"")
    (folder / "fake.jpg").write_text("this is not a JPEG")
    Image.new("RGB", (40, 40)).save(folder / "bomb.png")  # over the (lowered) pixel limit below
    Image.new("RGBA", (16, 16), (10, 200, 30, 128)).save(folder / "rgba.png")
    palette = rgb.convert("P")
    palette.info["transparency"] = 0
    palette.save(folder / "palette.png", transparency=0)
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(folder / "cmyk.jpg")
    Image.new("L", (16, 16), 77).save(folder / "gray.png")
    Image.new("RGB", (40, 24), (1, 2, 3)).save(folder / "wide.png")
    Image.fromarray(np.full((16, 16), 65535, np.uint16)).save(folder / "deep16.png")
    rgb.save(folder / "lossless.webp", lossless=True)
    rgb.save(folder / "plain.bmp")
    (folder / "notes.txt").write_text("not an image extension: ignored")


@pytest.fixture
def messy_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = fixtures.write_image_folder(tmp_path / "pets", per_class=4, size=(16, 16), splits=("train", "val"))
    _add_bad_and_odd_files(root / "train" / "dog")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 40x40 = 1600: Pillow warns (we treat it as an error)
    return root


def _tiny_model(in_chans: int, num_classes: int) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Conv2d(in_chans, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                               torch.nn.Flatten(), torch.nn.Linear(8, num_classes))


def test_messy_folder_trains_and_reports_skipped_files(messy_folder: Path, warnings_logged: list[str]) -> None:
    train = load(messy_folder)
    val = load(messy_folder, "val")
    assert len(train) == 12 + len(ODD) and len(val) == 12
    assert (train.class_names, train.in_chans, train.image_size) == (["cat", "dog", "fox"], 3, (16, 16))
    skipped = [m for m in warnings_logged if "skipped" in m]
    assert len(skipped) == 1, warnings_logged  # reported once, with the count and the first paths
    assert f"skipped {len(BAD)} unreadable image file(s)" in skipped[0]
    assert sum(name in skipped[0] for name in BAD) == 3 and "and 2 more" in skipped[0]

    model = _tiny_model(train.in_chans, train.num_classes)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    for epoch in range(2):
        for x, y in train.batches(8, shuffle=True, augment=True, epoch=epoch):
            loss = torch.nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            assert torch.isfinite(loss)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    with torch.no_grad():
        assert sum(len(y) for _, y in val.batches(5)) == 12


def test_odd_modes_are_converted(messy_folder: Path) -> None:
    split = load(messy_folder)
    dog = messy_folder / "train" / "dog"
    odd = preprocess_images([dog / n for n in ODD], in_chans=3, image_size=16, mean=(0, 0, 0), std=(1, 1, 1)) * 255
    odd = odd.round().to(torch.uint8)
    assert odd.shape == (len(ODD), 3, 16, 16)
    # Each converted odd image is in the training set, exactly as preprocess_images makes it.
    stored = {img.numpy().tobytes() for img in split.images}
    assert all(img.numpy().tobytes() in stored for img in odd)
    gray, deep = odd[ODD.index("gray.png")], odd[ODD.index("deep16.png")]
    assert gray.unique().tolist() == [77] and deep.unique().tolist() == [255]  # 16-bit scaled, not clipped
    assert odd[ODD.index("cmyk.jpg"), 0].float().mean() > 200 and odd[ODD.index("cmyk.jpg"), 1].float().mean() < 50
    assert torch.equal(odd[ODD.index("lossless.webp")], odd[ODD.index("plain.bmp")])  # both lossless copies of one image


def test_strict_fails_fast_naming_the_file(messy_folder: Path) -> None:
    with pytest.raises(ResNetError, match=r"cannot read image .*(truncated|empty|fake|bomb)\.\w+: .*--strict") as err:
        load(messy_folder, strict=True)
    assert "\n" not in str(err.value)


def test_files_decoded_per_batch_skip_bad_ones_mid_epoch(messy_folder: Path, warnings_logged: list[str]) -> None:
    lazy = load(messy_folder, in_memory=False)
    assert not lazy.in_memory and len(lazy) == 12 + len(ODD) + len(BAD) - 1  # the empty file is dropped up front
    seen = sum(len(y) for _, y in lazy.batches(6, shuffle=True, augment=True))
    assert seen == 12 + len(ODD)
    seen_again = sum(len(y) for _, y in lazy.batches(6, shuffle=True, epoch=1))
    assert seen_again == seen
    skipped = [m for m in warnings_logged if "skipped" in m]
    # The empty file when listing, the other four in the first epoch; none again in the second.
    assert len(skipped) == 2 and "skipped 1 " in skipped[0] and "empty.png" in skipped[0]
    assert "skipped 4 unreadable image file(s)" in skipped[1] and "and 1 more" in skipped[1]
    with pytest.raises(ResNetError, match="cannot read image"):
        for _ in load(messy_folder, in_memory=False, strict=True, image_size=(16, 16)).batches(6):
            pass


def test_workers_decode_the_same_batches_as_memory(tmp_path: Path) -> None:
    root = fixtures.write_image_folder(tmp_path / "set", per_class=5, size=(12, 12), splits=(), ext=".jpg")
    held = load(root, val_fraction=0.2, seed=1)
    lazy = load(root, val_fraction=0.2, seed=1, in_memory=False)
    assert held.mean == lazy.mean and len(held) == len(lazy) == 12
    for (x1, y1), (x2, y2) in zip(held.batches(5, shuffle=True, augment=True, epoch=3),
                                  lazy.batches(5, shuffle=True, augment=True, epoch=3, num_workers=2)):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert len(load(root, "val", val_fraction=0.2, seed=1)) == 3


def test_gray_folder_and_requested_size(tmp_path: Path) -> None:
    root = fixtures.write_image_folder(tmp_path / "gray", per_class=2, size=(10, 14), splits=("train", "test"), mode="L")
    split = load(root, "test", image_size=(20, 20))
    assert (split.in_chans, split.image_size, split.images.shape) == (1, (20, 20), (6, 1, 20, 20))
    x, y = next(split.batches(6))
    ref = preprocess_images(sorted((root / "test").rglob("*.png")), in_chans=1, image_size=(20, 20), mean=split.mean, std=split.std)
    assert torch.allclose(x, ref, atol=1e-5) and y.tolist() == [0, 0, 1, 1, 2, 2]


def test_folder_layout_errors(tmp_path: Path) -> None:
    root = fixtures.write_image_folder(tmp_path / "a", per_class=2, splits=("train", "val"))
    (root / "train" / "empty_class").mkdir()
    with pytest.raises(ResNetError, match=r"class folder .*empty_class has no image files"):
        load(root)
    (root / "train" / "empty_class").rmdir()
    (root / "val" / "unicorn").mkdir()
    Image.new("RGB", (16, 16)).save(root / "val" / "unicorn" / "u.png")
    with pytest.raises(ResNetError, match=r"unicorn is not among the training classes"):
        load(root, "val")
    with pytest.raises(ResNetError, match="has no test split|no validation split"):
        load(fixtures.write_image_folder(tmp_path / "b", per_class=2, splits=()), "val")
    (tmp_path / "flat").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "flat" / "x.png")
    with pytest.raises(ResNetError, match=r"no class folders in .*flat; expected .*<class name>/<image files>"):
        load(tmp_path / "flat")
    broken = fixtures.write_image_folder(tmp_path / "c", per_class=1, splits=())
    for f in (broken / "fox").iterdir():
        f.write_bytes(b"garbage")
    with pytest.raises(ResNetError, match=r"class folder .*fox has no readable images"):
        load(broken)


def test_preprocess_images_errors(tmp_path: Path) -> None:
    with pytest.raises(ResNetError, match="image not found: .*missing.png"):
        preprocess_images([tmp_path / "missing.png"], in_chans=3, image_size=8, mean=(0.5,) * 3, std=(0.5,) * 3)
    (tmp_path / "fake.png").write_text("nope")
    with pytest.raises(ResNetError, match=r"cannot read image .*fake.png: UnidentifiedImageError"):
        preprocess_images([tmp_path / "fake.png"], in_chans=3, image_size=8, mean=(0.5,) * 3, std=(0.5,) * 3)
    with pytest.raises(ResNetError, match="3/3 values but the model takes 1 channels"):
        preprocess_images([tmp_path / "fake.png"], in_chans=1, image_size=8, mean=(0.5,) * 3, std=(0.5,) * 3)
