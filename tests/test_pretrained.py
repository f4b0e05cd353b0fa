"""Published weights by name (issue 14, section 1): the cfgs derived from torchvision and checked against
timm, file resolution (explicit path, cache, download) with hash checks, and the metadata travelling into
predict, train and export. Nothing here touches the network: weights are served through file:// URLs."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from resnet.cli.main import main
from resnet.errors import ResNetError
from resnet.models import create_model, from_pretrained, get_pretrained_cfg, list_pretrained, read_metadata
from resnet.models import registry
from resnet.models.hub import file_sha256
from resnet.models.pretrained import TORCHVISION_ARCHS, PretrainedCfg

CLASSES = ("cat", "dog", "fish")


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("RESNET_CACHE", str(folder))
    return folder


@pytest.fixture
def published(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[PretrainedCfg, torch.nn.Module]:
    """A test-only weight set 'resnet20.tiny': a 3-class resnet20 served from a file:// URL, named as torch hub does."""
    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=3)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    server = tmp_path / "server"
    server.mkdir()
    raw = server / "raw.pth"
    torch.save(model.state_dict(), raw)
    digest = file_sha256(raw)
    served = raw.rename(server / f"resnet20_tiny-{digest[:8]}.pth")
    cfg = PretrainedCfg(arch="resnet20", tag="tiny", url=served.as_uri(), sha256=digest[:8], class_names=CLASSES,
                        input_size=(3, 24, 24), mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3), interpolation="bicubic",
                        crop_fraction=24 / 30, resize_size=30, source="test", license="mit", top1=12.5)
    monkeypatch.setitem(registry._PRETRAINED, "resnet20", {"tiny": cfg})
    return cfg, model.eval()


# --- the cfgs ---------------------------------------------------------------------------------------


def test_torchvision_cfgs_are_derived_from_its_weights_enums() -> None:
    from torchvision.models import get_model_weights

    count = 0
    for arch in TORCHVISION_ARCHS:
        enum = get_model_weights(arch)
        assert get_pretrained_cfg(arch).url == enum.DEFAULT.url  # torchvision's DEFAULT is the plain name's
        for weights in enum:
            cfg = get_pretrained_cfg(f"{arch}.{weights.name}")  # the enum name is an alias of the tag
            transform = weights.transforms()
            assert cfg.url == weights.url and weights.url.endswith(f"-{cfg.sha256}.pth")
            assert list(cfg.class_names) == weights.meta["categories"] and cfg.num_classes == 1000
            assert cfg.top1 == weights.meta["_metrics"]["ImageNet-1K"]["acc@1"]
            assert (cfg.input_size[1], cfg.resize) == (transform.crop_size[0], transform.resize_size[0])
            assert list(cfg.mean) == transform.mean and list(cfg.std) == transform.std
            assert cfg.interpolation == transform.interpolation.value and cfg.source == "torchvision"
            count += 1
    assert count == 17  # 18/34/101_64x4d: V1 only; the other seven: V1 and V2
    assert get_pretrained_cfg("resnet50.tv2_in1k").aliases == ("IMAGENET1K_V2",)


def test_timm_cfgs_match_timm_own_code() -> None:
    import timm

    timm_names = [n for n in list_pretrained() if get_pretrained_cfg(n).source == "timm"]
    assert len(timm_names) >= 40 and "resnet50.a1_in1k" in timm_names and "resnet50d.ra2_in1k" in timm_names
    for name in timm_names:
        ours, theirs = get_pretrained_cfg(name), timm.models.get_pretrained_cfg(name)
        assert ours.url == theirs.url, name
        assert ours.input_size == theirs.input_size and ours.crop_fraction == theirs.crop_pct, name
        assert ours.interpolation == theirs.interpolation and ours.license == theirs.license, name
        assert ours.mean == theirs.mean and ours.std == theirs.std and ours.num_classes == theirs.num_classes, name
        assert ours.sha256 and theirs.url.endswith(f"-{ours.sha256}.pth"), name
    # timm's copies of torchvision's weights point at the same files as ours.
    for name in ("resnet50.tv_in1k", "resnet50.tv2_in1k", "wide_resnet101_2.tv2_in1k"):
        assert get_pretrained_cfg(name).url == timm.models.get_pretrained_cfg(name).url


def test_names_tags_and_listing() -> None:
    assert list_pretrained("resnet50.*")[:2] == ["resnet50.tv2_in1k", "resnet50.tv_in1k"]  # default first
    assert "resnet20.tiny" not in list_pretrained() and list_pretrained("resnet20*") == []
    assert get_pretrained_cfg("resnet50").tag == "tv2_in1k" and get_pretrained_cfg("resnet18").tag == "tv_in1k"
    assert get_pretrained_cfg("resnet50", "imagenet1k_v1").name == "resnet50.tv_in1k"
    with pytest.raises(ResNetError, match=r"no weight set 'resnet50.v9'; resnet50 has: tv2_in1k, tv_in1k"):
        get_pretrained_cfg("resnet50.v9")
    with pytest.raises(ResNetError, match="no published weights for 'resnet20'"):
        create_model("resnet20", pretrained=True)
    with pytest.raises(ResNetError, match="no weight set 'resnet50.v9'"):
        create_model("resnet50.v9")  # a wrong tag fails before anything is built or fetched
    with pytest.raises(ResNetError, match="weight set resnet50.tv_in1k is for resnet50, not resnet18"):
        create_model("resnet18", pretrained="resnet50.tv_in1k")


# --- where the file comes from ------------------------------------------------------------------------


def test_download_into_the_cache_then_reuse(published, cache: Path, tmp_path: Path) -> None:
    cfg, reference = published
    model = create_model("resnet20", pretrained=True)  # the default (only) tag
    cached = cache / cfg.file_name
    assert cached.is_file() and [p.name for p in cache.iterdir()] == [cfg.file_name]  # atomic: no temporary left
    assert _same_weights(model, reference) and model.pretrained_from["name"] == "resnet20.tiny"
    assert model.pretrained_from["sha256"] == file_sha256(cached)
    shutil.rmtree(tmp_path / "server")  # the URL is gone: only the cache can serve it now
    again = create_model("resnet20.tiny", pretrained=True)
    assert _same_weights(again, reference)


def test_explicit_path_wins_and_is_hash_checked(published, cache: Path, tmp_path: Path) -> None:
    cfg, reference = published
    mine = tmp_path / "elsewhere.pth"
    shutil.copy(Path(cfg.url.removeprefix("file://")), mine)
    model = create_model("resnet20", pretrained="tiny", pretrained_path=str(mine))  # a tag of the model
    assert _same_weights(model, reference) and not cache.exists()  # nothing downloaded
    other = tmp_path / "other.pth"
    torch.save(create_model("resnet20", num_classes=3).state_dict(), other)
    with pytest.raises(ResNetError) as err:
        create_model("resnet20.tiny", pretrained=True, pretrained_path=str(other))
    message = str(err.value)
    assert str(other) in message and file_sha256(other) in message and cfg.sha256 in message and "not used" in message
    assert "\n" not in message


def test_a_tampered_cached_file_is_refused(published, cache: Path) -> None:
    cfg, _ = published
    cache.mkdir()
    cached = cache / cfg.file_name
    torch.save(create_model("resnet20", num_classes=3).state_dict(), cached)
    with pytest.raises(ResNetError) as err:
        create_model("resnet20.tiny", pretrained=True)
    assert f"{cached} has SHA-256 {file_sha256(cached)} but resnet20.tiny is published with {cfg.sha256}" in str(err.value)


def test_a_download_with_the_wrong_hash_is_not_kept(published, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg, _ = published
    wrong = PretrainedCfg(**{**cfg.__dict__, "sha256": "0123abcd"})
    monkeypatch.setitem(registry._PRETRAINED, "resnet20", {"tiny": wrong})
    with pytest.raises(ResNetError, match=r"downloaded .* but resnet20.tiny is published with 0123abcd; it was not saved"):
        create_model("resnet20.tiny", pretrained=True)
    assert not any(cache.iterdir())


def test_offline_names_the_url_and_where_to_put_the_file(published, cache: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg, _ = published
    url = (tmp_path / "unreachable" / cfg.file_name).as_uri()
    monkeypatch.setitem(registry._PRETRAINED, "resnet20", {"tiny": PretrainedCfg(**{**cfg.__dict__, "url": url})})
    with pytest.raises(ResNetError) as err:
        create_model("resnet20.tiny", pretrained=True)
    message = str(err.value)
    assert message.startswith(f"cannot download {url} (") and message.endswith(f"put the file at {cache / cfg.file_name}")
    assert "\n" not in message and not (cache / cfg.file_name).exists()


def test_torch_hub_checkpoints_are_reused(published, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg, reference = published
    monkeypatch.delenv("RESNET_CACHE", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    hub_file = tmp_path / "torch" / "hub" / "checkpoints" / cfg.file_name  # where torchvision downloads to
    hub_file.parent.mkdir(parents=True)
    shutil.move(cfg.url.removeprefix("file://"), hub_file)
    assert _same_weights(create_model("resnet20.tiny", pretrained=True), reference)


def test_unpublished_hash_is_recorded_on_first_use(published, cache: Path, monkeypatch: pytest.MonkeyPatch,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    cfg, reference = published
    monkeypatch.setitem(registry._PRETRAINED, "resnet20", {"tiny": PretrainedCfg(**{**cfg.__dict__, "sha256": None})})
    with caplog.at_level(logging.INFO, logger="resnet"):
        assert _same_weights(create_model("resnet20.tiny", pretrained=True), reference)
    record = cache / f"{cfg.file_name}.sha256"
    actual = file_sha256(cache / cfg.file_name)
    assert record.read_text().split()[0] == actual and f"recorded SHA-256 {actual}" in caplog.text
    create_model("resnet20.tiny", pretrained=True)  # matches the record
    torch.save(create_model("resnet20", num_classes=3).state_dict(), cache / cfg.file_name)
    with pytest.raises(ResNetError, match="was recorded for resnet20.tiny on first use"):
        create_model("resnet20.tiny", pretrained=True)


def test_fine_tuning_from_a_weight_set_keeps_the_trunk(published, cache: Path) -> None:
    cfg, reference = published
    model = create_model("resnet20", num_classes=5, in_chans=1, pretrained="resnet20.tiny")
    assert torch.equal(model.layer3[2].conv2.weight, reference.layer3[2].conv2.weight)
    assert torch.allclose(model.conv1.weight, reference.conv1.weight.sum(1, keepdim=True))
    assert model.fc.out_features == 5 and not hasattr(model, "pretrained_metadata")  # ImageNet-like names don't apply


# --- the metadata travels ----------------------------------------------------------------------------


def test_from_pretrained_returns_the_model_and_its_metadata(published, cache: Path, tmp_path: Path) -> None:
    cfg, reference = published
    model, meta = from_pretrained("resnet20.tiny")
    assert not model.training and _same_weights(model, reference)
    assert meta["class_names"] == list(CLASSES) and meta["mean"] == [0.5, 0.4, 0.3] and meta["std"] == [0.2, 0.25, 0.3]
    assert (meta["image_size"], meta["resize_size"], meta["interpolation"]) == ([24, 24], 30, "bicubic")
    assert meta["file"] == str(cache / cfg.file_name) and meta["top1"] == 12.5
    # Saved as it is, the published classifier keeps its classes and preprocessing in the header.
    header = read_metadata(__import__("resnet").save_weights(model, tmp_path / "m.safetensors"))
    assert header["class_names"] == list(CLASSES) and header["resize_size"] == 30
    assert header["pretrained_from"]["name"] == "resnet20.tiny"


def test_preprocessing_is_torchvision_weights_own(tmp_path: Path) -> None:
    from torchvision.models import ResNet50_Weights

    from resnet.data import preprocess_images

    image = tmp_path / "wide.png"
    Image.fromarray(torch.randint(0, 256, (300, 410, 3), dtype=torch.uint8).numpy()).save(image)
    meta = get_pretrained_cfg("resnet50.tv2_in1k").metadata()
    ours = preprocess_images([image], in_chans=3, image_size=meta["image_size"], mean=meta["mean"], std=meta["std"],
                             resize_size=meta["resize_size"], interpolation=meta["interpolation"])
    with Image.open(image) as img:
        theirs = ResNet50_Weights.IMAGENET1K_V2.transforms()(img.convert("RGB"))
    assert ours.shape == (1, 3, 224, 224) and torch.allclose(ours[0], theirs, atol=1e-5)


def test_predict_pretrained_prints_its_class_names_with_its_preprocessing(published, cache: Path, tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from torchvision import transforms

    cfg, reference = published
    image = tmp_path / "photo.png"
    torch.manual_seed(1)
    Image.fromarray(torch.randint(0, 256, (40, 52, 3), dtype=torch.uint8).numpy()).save(image)
    assert main(["predict", "--pretrained", "resnet20.tiny", "--json", "--top-k", "3", "--device", "cpu", str(image)]) == 0
    predictions = json.loads(capsys.readouterr().out)[0]["predictions"]
    prepare = transforms.Compose([
        transforms.Resize(30, interpolation=transforms.InterpolationMode.BICUBIC), transforms.CenterCrop(24),
        transforms.ToTensor(), transforms.Normalize(cfg.mean, cfg.std)])
    with Image.open(image) as img, torch.no_grad():
        expected = torch.softmax(reference(prepare(img.convert("RGB"))[None]), dim=1)[0]
    assert {p["class"] for p in predictions} == set(CLASSES)
    for p in predictions:
        assert p["class"] == CLASSES[p["index"]] and p["probability"] == pytest.approx(float(expected[p["index"]]), abs=1e-5)


def test_export_writes_class_names_and_mean_std_into_onnx(published, cache: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from resnet.export.onnx import read_metadata as onnx_metadata

    out = tmp_path / "tiny.onnx"
    assert main(["export", "--pretrained", "resnet20.tiny", "-o", str(out)]) == 0, capsys.readouterr().err
    props = onnx_metadata(out)
    assert props["class_names"] == list(CLASSES) and props["mean"] == [0.5, 0.4, 0.3] and props["std"] == [0.2, 0.25, 0.3]
    assert props["image_size"] == [24, 24] and props["resize_size"] == 30 and props["pretrained"] == "resnet20.tiny"


def test_models_pretrained_lists_the_weight_sets(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--pretrained", "resnet50", "--json"]) == 0
    rows = {r["pretrained"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["resnet50.tv2_in1k"]["default"] and not rows["resnet50.tv_in1k"]["default"]
    assert rows["resnet50.tv_in1k"]["top1"] == 76.13 and rows["resnet50.tv_in1k"]["file_name"] == "resnet50-0676ba61.pth"
    assert rows["resnet50.a1_in1k"]["source"] == "timm" and "resnet18.tv_in1k" not in rows
    assert main(["models", "--pretrained", "plain*"]) == 2
    assert "no published weight set matches 'plain*'" in capsys.readouterr().err


def test_train_from_a_weight_set_records_where_it_came_from(published, cache: Path, fmnist: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str], one_thread: None) -> None:
    cfg, _ = published
    out = tmp_path / "run"
    code = main(["train", "--data-dir", str(fmnist), "--pretrained", "resnet20.tiny", "--epochs", "1", "--max-steps", "1",
                 "--batch-size", "32", "--val-size", "32", "--no-amp", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == "resnet20" and config["pretrained"] == "resnet20.tiny"  # the weight set names the model
    header = read_metadata(out / "checkpoints" / "last.safetensors")
    assert header["pretrained_from"] == {"name": "resnet20.tiny", "url": cfg.url, "sha256": file_sha256(cache / cfg.file_name)}
    assert header["num_classes"] == 10 and header["class_names"][0] != "cat"  # the new task's classes, not the weights'


def test_a_published_file_is_recognised_by_its_name_and_hash(published, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from resnet.models import model_from_checkpoint

    cfg, reference = published
    served = Path(cfg.url.removeprefix("file://"))  # e.g. what torchvision left in its hub cache
    model, meta = model_from_checkpoint(served)  # no --model needed: the file name and hash say which it is
    assert _same_weights(model, reference) and meta["class_names"] == list(CLASSES) and meta["resize_size"] == 30
    renamed = tmp_path / "renamed.pth"
    shutil.copy(served, renamed)
    with pytest.raises(ResNetError, match="pass --model NAME"):
        model_from_checkpoint(renamed)
    image = tmp_path / "photo.png"
    Image.fromarray(torch.randint(0, 256, (30, 30, 3), dtype=torch.uint8).numpy()).save(image)
    assert main(["predict", "--checkpoint", str(served), "--json", "--device", "cpu", str(image)]) == 0
    assert {p["class"] for p in json.loads(capsys.readouterr().out)[0]["predictions"]} == set(CLASSES)
