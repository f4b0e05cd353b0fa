"""Training configuration: one dataclass with every knob, named recipes, and the precedence rules.

Precedence, lowest first: the dataclass defaults < the recipe (``quick`` unless another is named) <
a ``--config`` file (YAML or JSON) < flags given explicitly on the command line.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resnet.errors import ResNetError

SCHEDULES = ("step", "cosine", "onecycle", "constant")
OPTIMIZERS = ("sgd", "adam", "adamw")
TRAIN_CROPS = ("auto", "pad", "resized")
AUTO_AUGMENTS = ("none", "trivial", "rand")


@dataclass
class TrainConfig:
    # What to train on.
    model: str = "resnet20"
    data: str = "fashion-mnist"
    data_dir: str | None = None
    val_size: int | None = None  # images held out of the training split for validation
    val_fraction: float | None = None
    # A recipe's carve applies only to data without a val split of its own; an explicit
    # --val-fraction/--val-size (flag or config file) sets this False and carves anyway.
    own_val_first: bool = True
    download: bool = False  # fetch a named dataset with torchvision's downloader when it is not found
    strict: bool = False  # an unreadable image file stops the run instead of being skipped
    model_options: dict[str, Any] = field(default_factory=dict)
    pretrained: str | None = None  # start from these weights (fine-tuning): a weight-set name, a tag or a file
    unsafe_load: bool = False  # a pretrained file that is a full pickle may be unpickled (trusted files only)
    # How long, and with what steps.
    epochs: int = 30
    max_steps: int | None = None  # stop after this many optimizer steps (the paper counts iterations)
    batch_size: int = 128  # the global batch: split across processes under torchrun
    eval_batch_size: int = 256
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    schedule: str = "step"
    milestones: list[float] = field(default_factory=lambda: [0.5, 0.75])  # fractions of training, or epochs when > 1
    milestone_steps: list[int] | None = None  # absolute step numbers (the paper's 32k/48k), overrides milestones
    step_every: int | None = None  # step schedule: divide every N epochs instead of at milestones
    lr_gamma: float = 0.1
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    augment: bool = True  # random crop (zero padding of crop_padding pixels) + horizontal flip
    crop_padding: int = 4  # the paper's 4; 28x28 Fashion-MNIST trains better with less (benchmarks/train.md)
    # Progressive resizing: the epochs split evenly into len + 1 phases, trained at these square sizes and
    # then at the data's own (a smaller image costs its share of pixels, so early epochs come cheaper).
    progressive_sizes: list[int] = field(default_factory=list)
    # Photos (train_crop "resized"): RandomResizedCrop for training, resize + centre crop for evaluation.
    image_size: int | list[int] | str | None = None  # what the model sees: N, [H, W] or "HxW" (None: the data's own)
    train_crop: str = "auto"  # "pad": crop_padding + flip; "resized": random-resized crop; auto: resized for photos >= 64 px
    crop_scale: list[float] = field(default_factory=lambda: [0.08, 1.0])  # area fraction of the random-resized crop
    crop_ratio: list[float] = field(default_factory=lambda: [3 / 4, 4 / 3])  # its aspect ratio range
    auto_augment: str = "none"  # none, trivial (TrivialAugmentWide) or rand (RandAugment), photos only
    random_erasing: float = 0.0  # probability of erasing a random rectangle (photos only)
    crop_fraction: float = 0.875  # evaluation: shorter side to size / crop_fraction, then the centre crop (1: resize)
    tta: bool = False  # validation and test logits averaged with the mirrored image's (see evaluate)
    test_every: int = 1  # score the test split every N epochs (and always after the last): a short run's time goes to training
    mixup: float = 0.0  # mixup's Beta(alpha, alpha) (0: off); soft-target loss
    cutmix: float = 0.0  # cutmix's alpha (0: off); with mixup too, one of the two per batch
    # Practitioners' training features.
    accum_steps: int = 1  # each batch as this many micro-batches, one optimizer step (same result, less memory)
    clip_grad: float | None = None  # cap on the gradients' global L2 norm
    class_weights: str | list[float] | None = None  # "balanced" (n / (classes * count)) or one weight per class
    balanced_sampler: bool = False  # draw each epoch with replacement, every class equally likely
    freeze: int | None = None  # freeze the stem and the first N stages (0: the stem only)
    freeze_backbone_epochs: int = 0  # train the classifier only for the first N epochs, then everything
    backbone_lr_scale: float = 1.0  # the backbone's learning rate is lr x this (the classifier's is lr)
    early_stop: int | None = None  # stop when the monitored metric has not improved for this many epochs
    early_stop_metric: str | None = None  # val_loss (or train_loss without validation), val_top1, ...
    tensorboard: bool = False  # TensorBoard event files in RUN/tensorboard/
    # How to run it.
    amp: bool | None = None  # None: on exactly where the device has native bf16
    channels_last: bool = True
    compile: bool | None = False  # None: timed against eager in the first steps, the faster kept (train/compiling.py)
    ema: bool = False
    ema_decay: float = 0.999
    seed: int = 0
    deterministic: bool = False
    sync_bn: bool = False
    skip_nonfinite: bool = False
    device: str = "auto"
    threads: int | None = None  # CPU threads for torch (None: its default, one per core)
    num_workers: int = 0
    recipe: str = "quick"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# What the Fashion-MNIST time-budget presets share: one-cycle to lr 0.2, a 2-pixel crop padding, all
# 60k images for training (no validation carve), flip TTA when scoring.
_FMNIST_BUDGET: dict[str, Any] = dict(
    data="fashion-mnist", batch_size=128, lr=0.2, schedule="onecycle", crop_padding=2, label_smoothing=0.0,
    val_size=None, tta=True,
)

# Named presets. Each sets only what differs from the defaults above.
RECIPES: dict[str, dict[str, Any]] = {
    # The main job: resnet20 on Fashion-MNIST, a few minutes on 2 CPU cores, test accuracy >= 0.90.
    # Validation is a fraction (5,000 of Fashion-MNIST's 60,000) so small datasets work too.
    "quick": dict(
        model="resnet20", data="fashion-mnist", epochs=4, batch_size=128, lr=0.2, schedule="onecycle",
        warmup_epochs=0.0, weight_decay=5e-4, label_smoothing=0.0, val_fraction=1 / 12,
    ),
    # He et al. 2015, section 4.2: SGD 0.1, momentum 0.9, wd 1e-4, batch 128, /10 at 32k and 48k
    # iterations, stop at 64k, 45k/5k train/val split, 4-pixel pad + random crop + flip.
    "paper-cifar": dict(
        model="resnet20", data="cifar10", optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4, batch_size=128,
        schedule="step", milestone_steps=[32000, 48000], lr_gamma=0.1, max_steps=64000, epochs=182,
        val_size=5000, augment=True, warmup_epochs=0.0,
    ),
    # He et al. 2015, section 3.4: batch 256, lr 0.1 divided by 10 every 30 epochs, wd 1e-4, momentum 0.9.
    "paper-imagenet": dict(
        model="resnet50", optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4, batch_size=256,
        schedule="step", step_every=30, lr_gamma=0.1, epochs=90, warmup_epochs=0.0,
    ),
    # Best found for Fashion-MNIST within 10 minutes of 2-core CPU training (benchmarks/train.md):
    # a 2-pixel crop padding and wd 2e-4 fit better than the paper's 4 and 5e-4 in a short schedule.
    "fmnist-10min": dict(_FMNIST_BUDGET, model="resnet20", epochs=18, weight_decay=2e-4),
    # For 60 minutes: resnet56 (3x resnet20's work per image) for 38 epochs, with EMA of the weights.
    "fmnist-60min": dict(_FMNIST_BUDGET, model="resnet56", epochs=38, weight_decay=3e-4, ema=True),
    # For 5 minutes (issue 18): resnet20 for 16 epochs with progressive resizing, four epochs each at 16, 20
    # and 24 px, then four at 28 (0.940-0.943 over three seeds on Zen 3 for 1.22-1.26x the time of 8 plain
    # epochs, which scored 0.935; 14 epochs scored 0.937) and the test split scored once, at the end (test_every
    # beyond the epochs; benchmarks/train.md has every candidate). compile=None (auto) trains eager here, since each
    # phase's size would compile again (over the phases, no faster on Zen 3), and measures again if
    # --no-progressive-sizes turns the phases off.
    "fmnist-5min": dict(_FMNIST_BUDGET, model="resnet20", epochs=16, progressive_sizes=[16, 20, 24], weight_decay=2e-4,
                        compile=None, test_every=100),
    # For 30 minutes (issue 18): resnet32 with EMA of the weights for 48 epochs with progressive resizing, twelve
    # each at 16, 20, 24 and 28 px (0.9507 and 0.9516 over two seeds on Zen 3, for the compute of about 33 plain
    # epochs; 28 plain epochs scored 0.947), test scored once, at the end. Eager under the phases, as fmnist-5min.
    "fmnist-30min": dict(_FMNIST_BUDGET, model="resnet32", epochs=48, progressive_sizes=[16, 20, 24], weight_decay=3e-4,
                         ema=True, compile=None, test_every=100),
    # Fine-tuning on a small folder of your own photos (usually from --pretrained weights): a gentle
    # SGD lr with warm-up and a cosine decay, the classifier alone for the first epoch (a fresh
    # classifier's large early gradients would otherwise wreck the pretrained features), then the whole
    # net at one lr (a backbone at 0.1x lr lost 2 points in benchmarks/transfer.md); label smoothing for
    # a few hundred images. Without --pretrained the backbone is neither frozen nor slowed.
    "finetune": dict(
        epochs=10, batch_size=32, optimizer="sgd", lr=0.01, momentum=0.9, weight_decay=1e-4, schedule="cosine",
        warmup_epochs=1.0, label_smoothing=0.1, freeze_backbone_epochs=1, val_fraction=0.2,
    ),
}


def _field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(TrainConfig)]


def _normalize(values: dict[str, Any], source: str) -> dict[str, Any]:
    names = _field_names()
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = str(key).replace("-", "_")
        if name not in names:
            close = difflib.get_close_matches(name, names, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else f"; known keys: {', '.join(names)}"
            raise ResNetError(f"unknown training setting '{key}' in {source}{hint}")
        out[name] = value
    return out


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Settings from a YAML or JSON file (a mapping of TrainConfig keys, dashes or underscores)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ResNetError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    import yaml

    try:
        # JSON is a subset of YAML, but json gives clearer messages for .json files.
        values = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        kind = "JSON" if path.suffix.lower() == ".json" else "YAML"
        raise ResNetError(f"config file {path} is not valid {kind}: {str(exc).splitlines()[0]}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ResNetError(f"config file {path} must hold a mapping of settings (key: value), not {type(values).__name__}")
    return _normalize(values, str(path))


def resolve_config(
    overrides: dict[str, Any] | None = None, *, recipe: str | None = None, config_file: str | Path | None = None
) -> TrainConfig:
    """Build a TrainConfig: defaults < recipe < config file < ``overrides`` (explicit flags)."""
    overrides = _normalize(overrides or {}, "the arguments")
    from_file = read_config_file(config_file) if config_file else {}
    recipe = recipe or overrides.get("recipe") or from_file.get("recipe") or "quick"
    if recipe not in RECIPES:
        close = difflib.get_close_matches(recipe, list(RECIPES), n=3)
        hint = f"did you mean {', '.join(close)}?" if close else f"choose one of {', '.join(RECIPES)}"
        raise ResNetError(f"unknown recipe '{recipe}'; {hint}")
    values: dict[str, Any] = {}
    for layer in (RECIPES[recipe], from_file, overrides):
        # A validation size and a fraction exclude each other: the higher layer's choice replaces both.
        if {"val_size", "val_fraction"} & layer.keys():
            values.pop("val_size", None)
            values.pop("val_fraction", None)
            if layer is not RECIPES[recipe] and "own_val_first" not in layer:
                values["own_val_first"] = False
        values.update(layer)
    if values.get("val_fraction") == 0 or values.get("val_size") == 0:
        values["val_fraction"] = values["val_size"] = None  # 0 turns carving off
    values["recipe"] = recipe
    return validate(TrainConfig(**values))


def config_from_dict(values: dict[str, Any]) -> TrainConfig:
    """Rebuild a TrainConfig saved in a run folder's config.json (extra keys such as versions are ignored)."""
    names = set(_field_names())
    return validate(TrainConfig(**{k: v for k, v in values.items() if k in names}))


def validate(config: TrainConfig) -> TrainConfig:
    def bad(name: str, why: str) -> ResNetError:
        return ResNetError(f"--{name.replace('_', '-')}: {why}")

    if config.schedule not in SCHEDULES:
        raise bad("schedule", f"'{config.schedule}' is not one of {', '.join(SCHEDULES)}")
    if config.optimizer not in OPTIMIZERS:
        raise bad("optimizer", f"'{config.optimizer}' is not one of {', '.join(OPTIMIZERS)}")
    for name in ("epochs", "batch_size", "eval_batch_size", "test_every"):
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise bad(name, f"must be a positive whole number, got {value!r}")
    for name in ("lr", "momentum", "weight_decay", "warmup_epochs", "label_smoothing", "lr_gamma"):
        value = getattr(config, name)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
            raise bad(name, f"must be a finite number >= 0, got {value!r}")
    if not isinstance(config.crop_padding, int) or isinstance(config.crop_padding, bool) or config.crop_padding < 0:
        raise bad("crop_padding", f"must be a whole number >= 0, got {config.crop_padding!r}")
    sizes = config.progressive_sizes
    if not isinstance(sizes, list) or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 4 for n in sizes):
        raise bad("progressive_sizes", f"must be a list of whole numbers >= 4, got {sizes!r}")
    if config.lr <= 0:
        raise bad("lr", f"must be > 0, got {config.lr}")
    if config.label_smoothing >= 1:
        raise bad("label_smoothing", f"must be below 1, got {config.label_smoothing}")
    if not 0 < config.ema_decay < 1:
        raise bad("ema_decay", f"must be between 0 and 1, got {config.ema_decay}")
    if config.max_steps is not None and config.max_steps < 1:
        raise bad("max_steps", f"must be a positive whole number, got {config.max_steps}")
    if config.threads is not None and config.threads < 1:
        raise bad("threads", f"must be a positive whole number, got {config.threads}")
    if config.step_every is not None and config.step_every < 1:
        raise bad("step_every", f"must be a positive whole number of epochs, got {config.step_every}")
    for name in ("mixup", "cutmix"):
        value = getattr(config, name)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
            raise bad(name, f"must be an alpha >= 0 (0: off), got {value!r}")
    if not isinstance(config.accum_steps, int) or isinstance(config.accum_steps, bool) or config.accum_steps < 1:
        raise bad("accum_steps", f"must be a positive whole number, got {config.accum_steps!r}")
    if config.clip_grad is not None and not (isinstance(config.clip_grad, (int, float)) and config.clip_grad > 0):
        raise bad("clip_grad", f"must be a norm > 0, got {config.clip_grad!r}")
    if config.early_stop is not None and (not isinstance(config.early_stop, int) or config.early_stop < 1):
        raise bad("early_stop", f"must be a patience of at least 1 epoch, got {config.early_stop!r}")
    if config.freeze is not None and (not isinstance(config.freeze, int) or config.freeze < 0):
        raise bad("freeze", f"must be a number of stages >= 0, got {config.freeze!r}")
    weights = config.class_weights
    if weights is not None and weights != "balanced" and not (
            isinstance(weights, list) and all(isinstance(w, (int, float)) and w >= 0 for w in weights)):
        raise bad("class_weights", f"must be 'balanced' or one number >= 0 per class, got {weights!r}")
    config.image_size = parse_image_size(config.image_size, "--image-size")
    for name, choices in (("train_crop", TRAIN_CROPS), ("auto_augment", AUTO_AUGMENTS)):
        if getattr(config, name) not in choices:
            raise bad(name, f"'{getattr(config, name)}' is not one of {', '.join(choices)}")
    for name, low, high in (("crop_scale", 0.0, 1.0), ("crop_ratio", 0.0, math.inf)):
        value = getattr(config, name)
        if not (isinstance(value, (list, tuple)) and len(value) == 2 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and low < v <= high for v in value)
                and value[0] <= value[1]):
            raise bad(name, f"must be two numbers MIN MAX with {low:g} < MIN <= MAX"
                            + (f" <= {high:g}" if math.isfinite(high) else "") + f", got {value!r}")
        setattr(config, name, [float(v) for v in value])
    if not isinstance(config.random_erasing, (int, float)) or not 0 <= config.random_erasing <= 1:
        raise bad("random_erasing", f"must be a probability between 0 and 1, got {config.random_erasing!r}")
    if not isinstance(config.crop_fraction, (int, float)) or not 0 < config.crop_fraction <= 1:
        raise bad("crop_fraction", f"must be above 0 and at most 1 (1: plain resize), got {config.crop_fraction!r}")
    if (not isinstance(config.freeze_backbone_epochs, int) or isinstance(config.freeze_backbone_epochs, bool)
            or config.freeze_backbone_epochs < 0):
        raise bad("freeze_backbone_epochs", f"must be a whole number of epochs >= 0, got {config.freeze_backbone_epochs!r}")
    scale = config.backbone_lr_scale
    if not isinstance(scale, (int, float)) or isinstance(scale, bool) or not math.isfinite(scale) or scale < 0:
        raise bad("backbone_lr_scale", f"must be a finite number >= 0, got {scale!r}")
    if config.warmup_epochs >= config.epochs and config.warmup_epochs > 0:
        raise bad("warmup_epochs", f"{config.warmup_epochs} leaves no epochs after warm-up (--epochs {config.epochs})")
    return config


def parse_image_size(value: Any, name: str = "image size") -> list[int] | None:
    """An image size as [H, W]: from N, [N], [H, W], "N" or "HxW"; None stays None; else a ResNetError naming ``name``."""
    if value is None:
        return None
    parts: Any = value
    if isinstance(value, str):
        parts = value.lower().replace(" ", "").split("x")
        try:
            parts = [int(p) for p in parts]
        except ValueError:
            parts = None
    elif isinstance(value, int) and not isinstance(value, bool):
        parts = [value]
    if (not isinstance(parts, (list, tuple)) or len(parts) not in (1, 2)
            or not all(isinstance(p, int) and not isinstance(p, bool) and p >= 1 for p in parts)):
        raise ResNetError(f"{name}: expected N or HxW (positive whole numbers, e.g. 224 or 192x256), got {value!r}")
    return [parts[0], parts[-1]]
