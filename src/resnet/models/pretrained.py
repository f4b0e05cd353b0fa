"""Published weight sets: where each file is, its hash, and how its images must be prepared.

A ``PretrainedCfg`` is timm's ``pretrained_cfg`` idea (torchvision's Weights enum carries the same):
the URL and SHA-256 of the file, the classes, the input size, mean/std, resize interpolation and
centre-crop fraction, the source, licence and published top-1. Two sources are registered:

- torchvision: derived at import from torchvision's own ``Weights`` enums (``get_model_weights``), so
  URLs, class names, preprocessing and accuracies are torchvision's exactly. ``IMAGENET1K_V1`` is
  tagged ``tv_in1k`` and ``IMAGENET1K_V2`` ``tv2_in1k`` (timm's tags); the enum names are aliases,
  and torchvision's ``DEFAULT`` is the plain name's default.
- timm: the releases of timm's ``resnet.py`` default cfgs that are hosted as files with a hash in
  their name (GitHub releases), for the architectures registered here. The table below is checked
  against timm's own cfgs by ``tests/test_pretrained.py`` (URL, input size, crop, interpolation,
  mean/std, licence). timm publishes no top-1 in its code, so ``top1`` is None for these.

The hash: torch hub names a file ``name-<first 8+ hex digits of its SHA-256>.ext`` and checks that
prefix (timm's releases use the same convention, which ``timm.models.set_pretrained_check_hash``
checks); that prefix is ``sha256``. A weight set published without one (``sha256=None``) is
trusted on first use: its full SHA-256 is computed, reported and recorded beside the file in the
cache, and every later use is checked against the record (``resnet.models.hub``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Our names of the architectures torchvision publishes ImageNet weights for (its builder names).
TORCHVISION_ARCHS = (
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    "resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2",
)  # fmt: skip
# timm's GitHub-hosted releases for our architectures: (name.tag, URL after github.com/, input side,
# crop fraction, interpolation). Generated from timm 1.0's resnet.py default cfgs; the test compares.
TIMM_RELEASES = (
    ("resnet18.a1_in1k", "huggingface/pytorch-image-models/releases/download/v0.1-rsb-weights/resnet18_a1_0-d63eafa0.pth", 224, 0.95, "bicubic"),
    ("resnet18.a2_in1k", "huggingface/pytorch-image-models/releases/download/v0.1-rsb-weights/resnet18_a2_0-b61bd467.pth", 224, 0.95, "bicubic"),
    ("resnet18.a3_in1k", "huggingface/pytorch-image-models/releases/download/v0.1-rsb-weights/resnet18_a3_0-40c531c8.pth", 160, 0.95, "bicubic"),
    ("resnet18.gluon_in1k", "rwightman/pytorch-pretrained-gluonresnet/releases/download/v0.1/gluon_resnet18_v1b-0757602b.pth", 224, 0.875, "bicubic"),
    ("resnet18d.ra2_in1k", "rwightman/pytorch-image-models/releases/download/v0.1-weights/resnet18d_ra2-48a79e06.pth", 224, 0.875, "bicubic"),
    ("resnet34.a1_in1k", "huggingface/pytorch-image-models/releases/download/v0.1-rsb-weights/resnet34_a1_0-46f8f793.pth", 224, 0.95, "bicubic"),
    ("resnet34.a2_in1k", "huggingface/pytorch-image-models/releases/download/v0.1-rsb-weights/resnet34_a2_0-82d47d71.pth", 224, 0.95, "bicubic"),
    ("resnet34.a3_in1k", "huggingface/pytorch-image-models/releases/download/v0.1-rsb-weights/resnet34_a3_0-a20cabb6.pth", 160, 0.95, "bicubic"),
    ("resnet34.bt_in1k", "rwightman/pytorch-image-models/releases/download/v0.1-weights/resnet34-43635321.pth", 224, 0.875, "bicubic"),
    ("resnet34.gluon_in1k", "rwightman/pytorch-pretrained-gluonresnet/releases/download/v0.1/gluon_resnet34_v1b-c6d82d59.pth", 224, 0.875, "bicubic"),
    ("resnet34d.ra2_in1k", "rwightman/pytorch-image-models/releases/download/v0.1-weights/resnet34d_ra2-f8dcfcaf.pth", 224, 0.875, "bicubic"),
    ("resnet50.a1_in1k", "rwightman/pytorch-image-models/releases/download/v0.1-rsb-weights/resnet50_a1_0-14fe96d1.pth", 224, 0.95, "bicubic"),
    ("resnet50.a1h_in1k", "huggingface/pytorch-image-models/releases/download/v0.1-rsb-weights/resnet50_a1h2_176-001a1197.pth", 176, 0.9, "bicubic"),
    ("resnet50.a2_in1k", "huggingface/pytorch-image-models/releases/download/v0.1-rsb-weights/resnet50_a2_0-a2746f79.pth", 224, 0.95, "bicubic"),
    ("resnet50.a3_in1k", "huggingface/pytorch-image-models/releases/download/v0.1-rsb-weights/resnet50_a3_0-59cae1ef.pth", 160, 0.95, "bicubic"),
    ("resnet50.am_in1k", "huggingface/pytorch-image-models/releases/download/v0.1-weights/resnet50_am-6c502b37.pth", 224, 0.875, "bicubic"),
    ("resnet50.b1k_in1k", "huggingface/pytorch-image-models/releases/download/v0.1-rsb-weights/resnet50_b1k-532a802a.pth", 224, 0.95, "bicubic"),
    ("resnet50.b2k_in1k", "huggingface/pytorch-image-models/releases/download/v0.1-rsb-weights/resnet50_b2k-1ba180c1.pth", 224, 0.95, "bicubic"),
    ("resnet50.bt_in1k", "huggingface/pytorch-image-models/releases/download/v0.1-weights/rw_resnet50-86acaeed.pth", 224, 0.875, "bicubic"),
    ("resnet50.c1_in1k", "huggingface/pytorch-image-models/releases/download/v0.1-rsb-weights/resnet50_c1-5ba5e060.pth", 224, 0.95, "bicubic"),
    ("resnet50.c2_in1k", "huggingface/pytorch-image-models/releases/download/v0.1-rsb-weights/resnet50_c2-d01e05b2.pth", 224, 0.95, "bicubic"),
    ("resnet50.d_in1k", "huggingface/pytorch-image-models/releases/download/v0.1-rsb-weights/resnet50_d-f39db8af.pth", 224, 0.95, "bicubic"),
    ("resnet50.gluon_in1k", "rwightman/pytorch-pretrained-gluonresnet/releases/download/v0.1/gluon_resnet50_v1b-0ebe02e2.pth", 224, 0.875, "bicubic"),
    ("resnet50.ra_in1k", "huggingface/pytorch-image-models/releases/download/v0.1-weights/resnet50_ra-85ebb6e5.pth", 224, 0.875, "bicubic"),
    ("resnet50.ram_in1k", "huggingface/pytorch-image-models/releases/download/v0.1-weights/resnet50_ram-a26f946b.pth", 224, 0.875, "bicubic"),
    ("resnet50c.gluon_in1k", "rwightman/pytorch-pretrained-gluonresnet/releases/download/v0.1/gluon_resnet50_v1c-48092f55.pth", 224, 0.875, "bicubic"),
    ("resnet50d.a1_in1k", "huggingface/pytorch-image-models/releases/download/v0.1-rsb-weights/resnet50d_a1_0-e20cff14.pth", 224, 0.95, "bicubic"),
    ("resnet50d.a2_in1k", "huggingface/pytorch-image-models/releases/download/v0.1-rsb-weights/resnet50d_a2_0-a3adc64d.pth", 224, 0.95, "bicubic"),
    ("resnet50d.a3_in1k", "huggingface/pytorch-image-models/releases/download/v0.1-rsb-weights/resnet50d_a3_0-403fdfad.pth", 160, 0.95, "bicubic"),
    ("resnet50d.gluon_in1k", "rwightman/pytorch-pretrained-gluonresnet/releases/download/v0.1/gluon_resnet50_v1d-818a1b1b.pth", 224, 0.875, "bicubic"),
    ("resnet50d.ra2_in1k", "rwightman/pytorch-image-models/releases/download/v0.1-weights/resnet50d_ra2-464e36ba.pth", 224, 0.875, "bicubic"),
    ("resnet101.a1_in1k", "huggingface/pytorch-image-models/releases/download/v0.1-rsb-weights/resnet101_a1_0-cdcb52a9.pth", 224, 0.95, "bicubic"),
    ("resnet101.a1h_in1k", "rwightman/pytorch-image-models/releases/download/v0.1-rsb-weights/resnet101_a1h-36d3f2aa.pth", 224, 0.95, "bicubic"),
    ("resnet101.a2_in1k", "huggingface/pytorch-image-models/releases/download/v0.1-rsb-weights/resnet101_a2_0-6edb36c7.pth", 224, 0.95, "bicubic"),
    ("resnet101.a3_in1k", "huggingface/pytorch-image-models/releases/download/v0.1-rsb-weights/resnet101_a3_0-1db14157.pth", 160, 0.95, "bicubic"),
    ("resnet101.gluon_in1k", "rwightman/pytorch-pretrained-gluonresnet/releases/download/v0.1/gluon_resnet101_v1b-3b017079.pth", 224, 0.875, "bicubic"),
    ("resnet101d.gluon_in1k", "rwightman/pytorch-pretrained-gluonresnet/releases/download/v0.1/gluon_resnet101_v1d-0f9c8644.pth", 224, 0.875, "bicubic"),
    ("resnet101d.ra2_in1k", "rwightman/pytorch-image-models/releases/download/v0.1-weights/resnet101d_ra2-2803ffab.pth", 256, 0.95, "bicubic"),
    ("resnet152.a1_in1k", "huggingface/pytorch-image-models/releases/download/v0.1-rsb-weights/resnet152_a1_0-2eee8a7a.pth", 224, 0.95, "bicubic"),
    ("resnet152.a1h_in1k", "rwightman/pytorch-image-models/releases/download/v0.1-rsb-weights/resnet152_a1h-dc400468.pth", 224, 0.95, "bicubic"),
    ("resnet152.a2_in1k", "huggingface/pytorch-image-models/releases/download/v0.1-rsb-weights/resnet152_a2_0-b4c6978f.pth", 224, 0.95, "bicubic"),
    ("resnet152.a3_in1k", "huggingface/pytorch-image-models/releases/download/v0.1-rsb-weights/resnet152_a3_0-134d4688.pth", 160, 0.95, "bicubic"),
    ("resnet152.gluon_in1k", "rwightman/pytorch-pretrained-gluonresnet/releases/download/v0.1/gluon_resnet152_v1b-c1edb0dd.pth", 224, 0.875, "bicubic"),
    ("resnet152d.gluon_in1k", "rwightman/pytorch-pretrained-gluonresnet/releases/download/v0.1/gluon_resnet152_v1d-bd354e12.pth", 224, 0.875, "bicubic"),
    ("resnet152d.ra2_in1k", "rwightman/pytorch-image-models/releases/download/v0.1-weights/resnet152d_ra2-5cac0439.pth", 256, 0.95, "bicubic"),
    ("resnext50_32x4d.a1_in1k", "huggingface/pytorch-image-models/releases/download/v0.1-rsb-weights/resnext50_32x4d_a1_0-b5a91a1d.pth", 224, 0.95, "bicubic"),
    ("resnext50_32x4d.a1h_in1k", "rwightman/pytorch-image-models/releases/download/v0.1-rsb-weights/resnext50_32x4d_a1h-0146ab0a.pth", 224, 0.95, "bicubic"),
    ("resnext50_32x4d.a2_in1k", "huggingface/pytorch-image-models/releases/download/v0.1-rsb-weights/resnext50_32x4d_a2_0-efc76add.pth", 224, 0.95, "bicubic"),
    ("resnext50_32x4d.a3_in1k", "huggingface/pytorch-image-models/releases/download/v0.1-rsb-weights/resnext50_32x4d_a3_0-3e450271.pth", 160, 0.95, "bicubic"),
    ("resnext50_32x4d.gluon_in1k", "rwightman/pytorch-pretrained-gluonresnet/releases/download/v0.1/gluon_resnext50_32x4d-e6a097c1.pth", 224, 0.875, "bicubic"),
    ("resnext50_32x4d.ra_in1k", "huggingface/pytorch-image-models/releases/download/v0.1-weights/resnext50_32x4d_ra-d733960d.pth", 224, 0.875, "bicubic"),
    ("resnext101_64x4d.c1_in1k", "rwightman/pytorch-image-models/releases/download/v0.1-tpu-weights/resnext101_64x4d_c-0d0e0cc0.pth", 224, 0.95, "bicubic"),
    ("resnext101_64x4d.gluon_in1k", "rwightman/pytorch-pretrained-gluonresnet/releases/download/v0.1/gluon_resnext101_64x4d-f9a8e184.pth", 224, 0.875, "bicubic"),
    ("wide_resnet50_2.racm_in1k", "rwightman/pytorch-image-models/releases/download/v0.1-weights/wide_resnet50_racm-8234f177.pth", 224, 0.875, "bicubic"),
)
TIMM_LICENSE = "apache-2.0"
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.[A-Za-z0-9]+$")


@dataclass(frozen=True)
class PretrainedCfg:
    """One published weight set of a registered model (``arch.tag``)."""

    arch: str
    tag: str
    url: str
    sha256: str | None  # the full SHA-256 or the prefix torch hub puts in the file name; None: unpublished
    class_names: tuple[str, ...]
    input_size: tuple[int, int, int] = (3, 224, 224)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: str = "bilinear"
    crop_fraction: float = 0.875
    resize_size: int | None = None  # shorter side before the centre crop; None: input side / crop_fraction
    source: str = ""
    license: str = ""
    top1: float | None = None
    origin_url: str = ""
    aliases: tuple[str, ...] = ()
    filename: str = ""  # the name in the cache; default: the URL's last part (as torch hub names it)
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def name(self) -> str:
        return f"{self.arch}.{self.tag}"

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def file_name(self) -> str:
        return self.filename or self.url.rstrip("/").rsplit("/", 1)[-1]

    @property
    def resize(self) -> int:
        """The shorter side images are resized to before the centre crop (timm: floor(side / crop))."""
        return self.resize_size or math.floor(self.input_size[-1] / self.crop_fraction)

    def metadata(self) -> dict[str, Any]:
        """What travels with the weights: the keys a resnet checkpoint header carries, plus provenance."""
        return {
            "arch": self.arch, "num_classes": self.num_classes, "in_chans": self.input_size[0],
            "class_names": list(self.class_names), "mean": list(self.mean), "std": list(self.std),
            "image_size": list(self.input_size[1:]), "resize_size": self.resize, "crop_fraction": self.crop_fraction,
            "interpolation": self.interpolation, "pretrained": self.name, "url": self.url, "sha256": self.sha256,
            "source": self.source, "license": self.license, "top1": self.top1,
        }  # fmt: skip


def hash_in_file_name(url: str) -> str | None:
    """The SHA-256 prefix torch hub's naming puts in a file name (``resnet50-0676ba61.pth``), if any."""
    match = _HASH_IN_NAME.search(url.rsplit("/", 1)[-1])
    return match[1] if match else None


def torchvision_cfgs(arch: str) -> list[tuple[PretrainedCfg, bool]]:
    """(cfg, is torchvision's DEFAULT) for each of torchvision's Weights of ``arch``, read from the enum."""
    from torchvision.models import get_model_weights

    enum = get_model_weights(arch)
    cfgs = []
    for weights in enum:
        transform = weights.transforms()
        crop, resize = int(transform.crop_size[0]), int(transform.resize_size[0])
        version = weights.name.rsplit("_V", 1)[-1]
        metrics = weights.meta.get("_metrics", {}).get("ImageNet-1K", {})
        cfg = PretrainedCfg(
            arch=arch, tag=f"tv{'' if version == '1' else version}_in1k", url=weights.url,
            sha256=hash_in_file_name(weights.url), class_names=tuple(weights.meta["categories"]),
            input_size=(3, crop, crop), mean=tuple(transform.mean), std=tuple(transform.std),
            interpolation=transform.interpolation.value, crop_fraction=crop / resize, resize_size=resize,
            source="torchvision", license="bsd-3-clause", top1=metrics.get("acc@1"),
            origin_url=weights.meta.get("recipe", ""), aliases=(weights.name,),
        )  # fmt: skip
        cfgs.append((cfg, weights is enum.DEFAULT))
    return cfgs


def timm_cfgs() -> list[PretrainedCfg]:
    """The timm releases of ``TIMM_RELEASES`` (ImageNet-1k classes, as torchvision names them)."""
    from torchvision.models import ResNet18_Weights

    imagenet = tuple(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])
    cfgs = []
    for name, path, side, crop, interpolation in TIMM_RELEASES:
        arch, tag = name.split(".")
        url = f"https://github.com/{path}"
        cfgs.append(PretrainedCfg(
            arch=arch, tag=tag, url=url, sha256=hash_in_file_name(url), class_names=imagenet,
            input_size=(3, side, side), interpolation=interpolation, crop_fraction=crop, source="timm",
            license=TIMM_LICENSE, origin_url="https://github.com/huggingface/pytorch-image-models",
        ))  # fmt: skip
    return cfgs


def register_published() -> None:
    """Attach every published weight set to its registered model (called once, after the builders)."""
    from resnet.models.registry import is_model, register_pretrained

    for arch in TORCHVISION_ARCHS:
        for cfg, default in torchvision_cfgs(arch):
            register_pretrained(cfg, default=default)
    for cfg in timm_cfgs():
        if is_model(cfg.arch):
            register_pretrained(cfg)
