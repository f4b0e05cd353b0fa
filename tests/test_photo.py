"""Fine-tuning on your own photos: --image-size, the photo transforms, bounded memory for large photos,
small folders that no longer diverge, the batch clamp, the loss-explosion line, the finetune recipe."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

from resnet.cli.main import main
from resnet.data import load_splits
from resnet.data.images import decode_image
from resnet.data.photo import PhotoTransforms, resize_centre_crop
from resnet.errors import ResNetError
from resnet.train import resolve_config

TINY = ["--model-option", "widths=[4,8,16]", "--no-amp", "--device", "cpu", "--threads", "1"]

pytestmark = pytest.mark.usefixtures("one_thread")


def photo_folder(root: Path, per_class: int = 12, size: tuple[int, int] = (80, 64), classes: int = 3,
                 suffix: str = ".png", seed: int = 0) -> Path:
    """Smooth class-dependent gradients plus a little noise: learnable, and JPEGs of them stay small."""
    rng = np.random.default_rng(seed)
    height, width = size
    yy, xx = np.mgrid[0:height, 0:width]
    for c in range(classes):
        folder = root / f"class{c}"
        folder.mkdir(parents=True, exist_ok=True)
        ramp = (xx / width, yy / height, (xx + yy) / (width + height))[c % 3]
        base = np.stack([ramp * 200 + 20 * k for k in range(3)], -1).astype(np.int16)
        noise = rng.integers(-12, 13, base.shape, dtype=np.int16)  # drawn once per class: large photos stay quick
        for i in range(per_class):
            image = np.clip(base + np.roll(noise, 7 * i, axis=(0, 1)), 0, 255).astype(np.uint8)
            Image.fromarray(image).save(folder / f"{i}{suffix}", **({"quality": 85} if suffix == ".jpg" else {}))
    return root


def metadata_of(checkpoint: Path) -> dict:
    with safe_open(str(checkpoint), "pt") as f:
        raw = f.metadata()
    return {k: json.loads(v) for k, v in raw.items() if k != "format"} if "image_size" in raw else json.loads(raw["resnet"])


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return photo_folder(tmp_path_factory.mktemp("photos"))


# -- --image-size on train, eval and predict ------------------------------------------------------------


def test_image_size_train_eval_predict(photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    # 80x64 photos are "photos" for train_crop auto: random-resized crop to 32, centre crop to validate.
    assert main(["train", "--data", str(photos), *TINY, "--image-size", "32", "--epochs", "1", "--batch-size", "8",
                 "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["image_size"] == [32, 32] and config["train_crop"] == "resized"
    meta = metadata_of(out / "checkpoints" / "last.safetensors")
    assert meta["image_size"] == [32, 32] and meta["train_crop"] == "resized"
    assert meta["resize_size"] == 36 and meta["crop_fraction"] == 0.875 and meta["interpolation"] == "bilinear"

    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(out), "--split", "val", "--json", "--device", "cpu"]) == 0
    at_own = json.loads(capsys.readouterr().out)
    assert at_own["num_samples"] == 3  # 1/12 of 36 images, centre-cropped to 32 as validated
    assert main(["eval", "--checkpoint", str(out), "--split", "val", "--json", "--device", "cpu",
                 "--image-size", "40x48"]) == 0
    assert json.loads(capsys.readouterr().out)["loss"] != pytest.approx(at_own["loss"])

    from resnet.train.inference import load_checkpoint, predict_stream, resize_for

    image = photos / "class0" / "0.png"
    assert main(["predict", str(image), "--checkpoint", str(out), "--json", "--image-size", "48"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["predictions"]
    stream = predict_stream(out, [image], image_size="48", device="cpu")
    assert tuple(stream.image_size) == (48, 48)
    assert resize_for(load_checkpoint(out, device="cpu").metadata, (48, 48)) == math.floor(48 / 0.875)


def test_small_images_trained_at_another_size_are_evaluated_at_it(tmp_path: Path) -> None:
    from resnet.train.inference import evaluate_checkpoint

    folder = photo_folder(tmp_path / "small", per_class=8, size=(28, 28))
    out = tmp_path / "run"
    assert main(["train", "--data", str(folder), *TINY, "--image-size", "20", "--epochs", "1", "--batch-size", "8",
                 "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["train_crop"] == "pad"  # 28 px: not photos
    assert metadata_of(out / "checkpoints" / "last.safetensors")["image_size"] == [20, 20]
    _, _, split = evaluate_checkpoint(out, split="val", device="cpu")
    assert split.image_size == (20, 20) and split.photo is None
    _, _, split = evaluate_checkpoint(out, split="val", device="cpu", image_size="24x16")
    assert split.image_size == (24, 16)


def test_image_size_in_config_files_and_its_errors(tmp_path: Path) -> None:
    for text, expected in (("image_size: 64\n", [64, 64]), ("image_size: 48x64\n", [48, 64]),
                           ("image_size: [48, 64]\n", [48, 64])):
        (tmp_path / "c.yaml").write_text(text)
        assert resolve_config(config_file=tmp_path / "c.yaml").image_size == expected
    for bad in ("0", "64x", "big", [1, 2, 3], -3):
        with pytest.raises(ResNetError, match="--image-size"):
            resolve_config({"image_size": bad})
    with pytest.raises(ResNetError, match="--crop-scale"):
        resolve_config({"crop_scale": [0.5, 0.1]})
    with pytest.raises(ResNetError, match="--crop-fraction"):
        resolve_config({"crop_fraction": 1.5})
    with pytest.raises(ResNetError, match="--train-crop"):
        resolve_config({"train_crop": "random"})
    assert list(resolve_config({"recipe": "finetune"}).to_dict()) == list(resolve_config().to_dict())


def test_published_weights_input_size_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    from resnet.models.registry import get_pretrained_cfg
    from resnet.train import trainer

    cfg = get_pretrained_cfg("resnet18.tv_in1k")
    seen = {}

    def fake_load_splits(spec, **kwargs):
        seen.update(kwargs)
        raise ResNetError("stop here")

    monkeypatch.setattr("resnet.data.load_splits", fake_load_splits)
    with pytest.raises(ResNetError, match="stop here"):
        trainer.open_data(resolve_config({"model": "resnet18", "pretrained": "resnet18.tv_in1k", "data": "x"}))
    assert seen["image_size"] == list(cfg.input_size[1:]) and seen["photo"] is not None
    assert seen["photo_if_native"] is None  # ImageNet weights: random-resized crop whatever the data's size
    with pytest.raises(ResNetError, match="stop here"):
        trainer.open_data(resolve_config({"model": "resnet18", "pretrained": "resnet18.tv_in1k", "data": "x",
                                          "image_size": 96}))
    assert seen["image_size"] == [96, 96]


# -- the transforms ---------------------------------------------------------------------------------


def test_centre_crop_equals_torchvision_resize_and_centre_crop(tmp_path: Path) -> None:
    from torchvision.transforms import v2

    rng = np.random.default_rng(1)
    array = rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)
    path = tmp_path / "x.png"
    Image.fromarray(array).save(path)
    photo = PhotoTransforms(size=(48, 48))
    reference = v2.Compose([v2.Resize(photo.resize_size), v2.CenterCrop(48)])(Image.open(path))
    decoded = decode_image(path, in_chans=3, image_size=photo.size, resize_size=photo.resize_size)
    assert photo.resize_size == 54 and np.array_equal(decoded, np.asarray(reference))
    # The same on uint8 tensors (HDF5 photos): torchvision's tensor Resize (antialiased) + CenterCrop.
    tensor = torch.from_numpy(array).permute(2, 0, 1)[None]
    ours = resize_centre_crop(tensor, photo.resize_size, photo.size)
    theirs = v2.CenterCrop(48)(v2.Resize(photo.resize_size, antialias=True)(tensor))
    assert (ours.int() - theirs.int()).abs().max() <= 1  # float vs torchvision's uint8 rounding
    # crop_fraction 1: a plain resize, nothing cut off.
    assert PhotoTransforms(size=(48, 48), crop_fraction=1.0).resize_size is None


def test_training_views_are_seeded_per_image() -> None:
    photo = PhotoTransforms(size=(32, 32), auto_augment="trivial", random_erasing=0.5)
    image = torch.randint(0, 256, (3, 36, 50), dtype=torch.uint8)
    fill = photo.fill((0.5, 0.4, 0.3))
    a, b, c = (photo.train_image(image, s, fill) for s in (7, 7, 8))
    assert a.shape == (3, 32, 32) and a.dtype == torch.uint8
    assert torch.equal(a, b) and not torch.equal(a, c)
    before = torch.get_rng_state()
    photo.train_image(image, 9, fill)
    assert torch.equal(torch.get_rng_state(), before)  # training's own random stream is left alone
    rand = PhotoTransforms(size=(24, 24), auto_augment="rand").train_image(image[:1], 1, (3,))
    assert rand.shape == (1, 24, 24)


@pytest.mark.parametrize("in_memory", [True, False])
def test_photo_batches_are_a_function_of_seed_epoch_and_position(photos: Path, in_memory: bool) -> None:
    train = load_splits(photos, image_size=24, photo=PhotoTransforms(size=(24, 24)), in_memory=in_memory).train
    assert train.in_memory is in_memory and train.image_size == (24, 24)
    if in_memory:
        assert tuple(train.images.shape[-2:]) == (27, 27)  # held at size / crop_fraction

    def epoch(seed: int, number: int, start: int = 0) -> list[torch.Tensor]:
        return [x for x, _ in train.batches(8, shuffle=True, augment=True, seed=seed, epoch=number, start_batch=start)]

    first = epoch(0, 0)
    assert first[0].shape == (8, 3, 24, 24)
    assert all(torch.equal(x, y) for x, y in zip(first, epoch(0, 0)))
    assert all(torch.equal(x, y) for x, y in zip(first[2:], epoch(0, 0, start=2)))  # resume mid-epoch
    assert not torch.equal(first[0], epoch(0, 1)[0]) and not torch.equal(first[0], epoch(1, 0)[0])
    plain = [x for x, _ in train.batches(8)]  # evaluation: the centre crop, no randomness
    assert plain[0].shape == (8, 3, 24, 24) and torch.equal(plain[0], next(iter(train.batches(8)))[0])


def test_small_images_keep_the_padded_crop(tmp_path: Path) -> None:
    folder = photo_folder(tmp_path / "small", per_class=4, size=(28, 28))
    config = resolve_config({"data": str(folder)})
    from resnet.train.trainer import open_data

    config, splits = open_data(config)
    assert config.train_crop == "pad" and splits.train.photo is None


# -- large photos: bounded memory -----------------------------------------------------------------------


def test_a_folder_of_large_photos_trains_in_bounded_memory(tmp_path: Path) -> None:
    """100 JPEGs of 1200x1600: all decoded at full size would be 576 MB; training at 64 px must not hold them."""
    folder = photo_folder(tmp_path / "large", per_class=50, size=(1600, 1200), classes=2, suffix=".jpg")
    script = textwrap.dedent(f"""
        import resource, sys
        import resnet.data.folder as folder
        folder.IN_MEMORY_LIMIT = 0  # as a folder too large for memory: decoded per batch
        from resnet.cli.main import main
        import torch
        torch.zeros(1)
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        code = main(["train", "--data", {str(folder)!r}, "--image-size", "64", "--model-option", "widths=[4,8,16]",
                     "--no-amp", "--device", "cpu", "--threads", "1", "--batch-size", "16", "--epochs", "1",
                     "--max-steps", "3", "--val-size", "8", "--out", {str(tmp_path / "run")!r}])
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print("RSS", base, peak)
        sys.exit(code)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    base_kb, peak_kb = map(int, done.stdout.split("RSS")[-1].split())
    assert "decoded per batch" in done.stderr + done.stdout
    assert (peak_kb - base_kb) / 1024 < 400, (base_kb, peak_kb)  # ru_maxrss is in KiB on Linux


# -- small folders: no divergence, the batch clamp, the explosion line -------------------------------------


def test_quick_recipe_on_a_small_folder_does_not_explode(tmp_path: Path) -> None:
    """The quick recipe (lr 0.2 one-cycle) on 110 images in batches of 32: 3 steps an epoch, 12 in all.

    Before the fix this very run (main's code) ended with train loss 0.34 but validation loss 21.9
    (43.8 after epoch 3; 163 with resnet20's full widths, 4.8e14 on a resnet50): after 12 steps
    BatchNorm's running statistics still held 0.9**12 = 28% of their initial mean 0 / variance 1,
    far from the real activations', so every evaluation exploded. Recomputing them over the
    training set on the very same weights gave validation loss 0.004. Now evaluation must be sane
    and the training loss falls.
    """
    folder = photo_folder(tmp_path / "f32", per_class=40, size=(32, 32))
    out = tmp_path / "run"
    assert main(["train", "--data", str(folder), "--model-option", "widths=[8,16,32]", "--no-amp", "--device", "cpu",
                 "--threads", "1", "--batch-size", "32", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all(math.isfinite(r["val_loss"]) and math.isfinite(r["train_loss"]) for r in rows)
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert rows[-1]["val_loss"] < math.log(3)  # better than guessing, not 1e2..1e14


def test_a_batch_larger_than_the_set_is_clamped(photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--data", str(photos), *TINY, "--image-size", "24", "--epochs", "1",
                 "--out", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err
    assert "--batch-size 128 is more than the 33 training images: using batches of 33" in err
    assert json.loads((tmp_path / "run" / "config.json").read_text())["batch_size"] == 33


def test_an_exploding_loss_is_said_in_one_line(photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["train", "--data", str(photos), *TINY, "--image-size", "24", "--epochs", "1", "--batch-size", "4",
          "--lr", "1e4", "--schedule", "constant", "--skip-nonfinite", "--out", str(tmp_path / "run")])
    lines = [line for line in capsys.readouterr().err.splitlines() if "exploded" in line]
    assert len(lines) == 1 and "--lr 1000" in lines[0] and "--recipe finetune" in lines[0]


# -- the finetune recipe ------------------------------------------------------------------------------


def test_finetune_freezes_the_backbone_for_its_first_epoch_and_resumes(photos: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from resnet import create_model
    from resnet.models import save_weights

    torch.manual_seed(1)  # "pretrained" weights: any weights given with --pretrained
    pretrained = create_model("resnet20", num_classes=3, in_chans=3, widths=[4, 8, 16])
    save_weights(pretrained, tmp_path / "pretrained.safetensors")
    start = pretrained.state_dict()
    # A constant lr after no warm-up: the schedule is then the same whether planned for 1 or 2 epochs.
    common = ["--recipe", "finetune", "--data", str(photos), *TINY, "--image-size", "24", "--batch-size", "8",
              "--val-fraction", "0.25", "--schedule", "constant", "--warmup-epochs", "0",
              "--pretrained", str(tmp_path / "pretrained.safetensors")]
    out, whole = tmp_path / "run", tmp_path / "whole"
    assert main(["train", *common, "--epochs", "1", "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["freeze_backbone_epochs"] == 1 and config["backbone_lr_scale"] == 1.0
    after_one = load_file(out / "checkpoints" / "last.safetensors")
    params = [k for k in after_one if "running" not in k and "num_batches" not in k]
    assert all(torch.equal(after_one[k], start[k]) for k in params if not k.startswith("fc."))
    assert not torch.equal(after_one["fc.weight"], start["fc.weight"])
    # Extended by a second epoch (a resume): the backbone trains from then on ...
    assert main(["train", "--resume", str(out), "--epochs", "2"]) == 0
    after_two = load_file(out / "checkpoints" / "last.safetensors")
    assert any(not torch.equal(after_two[k], start[k]) for k in params if k.startswith("layer"))
    # ... exactly as a run planned for two epochs from the start.
    assert main(["train", *common, "--epochs", "2", "--out", str(whole)]) == 0
    straight = load_file(whole / "checkpoints" / "last.safetensors")
    assert all(torch.equal(after_two[k], straight[k]) for k in straight)


def test_finetune_from_random_weights_trains_the_whole_net_at_once(photos: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    # Freezing a random backbone only costs accuracy (benchmarks/transfer.md): without --pretrained the
    # recipe's backbone settings are dropped, with a line that says so.
    assert main(["train", "--recipe", "finetune", "--data", str(photos), *TINY, "--image-size", "24",
                 "--batch-size", "8", "--epochs", "2", "--out", str(tmp_path / "run")]) == 0
    assert "no --pretrained weights: the backbone trains at the full learning rate" in capsys.readouterr().err
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["freeze_backbone_epochs"] == 0 and config["backbone_lr_scale"] == 1.0
