"""The papers' experiments as data: which nets each one trains, and the published figures to print beside ours.

Published figures, all test error in % (checked against the papers' text):

* He et al. 2015, "Deep Residual Learning for Image Recognition", Table 6: CIFAR-10 test error of
  ResNet-20/32/44/56/110 (8.75, 7.51, 7.17, 6.97, 6.43). The plain nets have no table entry: the
  paper shows them only as curves (Figure 6).
* He et al. 2016, "Identity Mappings in Deep Residual Networks", Table 2: CIFAR-10 test error of
  ResNet-110 with the five residual-unit orderings of its Figure 4 (6.61, 8.17, 7.84, 6.71, 6.37).
* He et al. 2015, Table 3: ImageNet validation top-1 error (10-crop) of ResNet-34 with shortcut
  options A, B, C (25.03, 24.52, 24.19). The paper has no CIFAR-10 figures for the options, so this
  is a different dataset and net from ours, and labelled so.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from resnet.errors import ResNetError

CIFAR_DEPTHS = (20, 32, 44, 56, 110)  # the depths with both a plain-n and a ResNet-n in the registry

TABLE6 = {20: 8.75, 32: 7.51, 44: 7.17, 56: 6.97, 110: 6.43}
TABLE6_SOURCE = "He et al. 2015 Table 6: CIFAR-10 test error, 64k iterations"

UNIT_NAMES = {
    "original": "original", "bn_after_add": "BN after addition", "relu_before_add": "ReLU before addition",
    "relu_preact": "ReLU-only pre-activation", "full_preact": "full pre-activation",
}
IDENTITY_TABLE2 = {"original": 6.61, "bn_after_add": 8.17, "relu_before_add": 7.84, "relu_preact": 6.71, "full_preact": 6.37}
IDENTITY_TABLE2_SOURCE = "He et al. 2016 (Identity Mappings) Table 2: ResNet-110, CIFAR-10 test error"

SHORTCUT_NAMES = {"A": "A: zero-padding identity", "B": "B: projection where dimensions grow", "C": "C: all projections"}
TABLE3 = {"A": 25.03, "B": 24.52, "C": 24.19}
TABLE3_SOURCE = "He et al. 2015 Table 3: ResNet-34, ImageNet val top-1 error (10-crop)"


@dataclass(frozen=True)
class Member:
    """One training run of an experiment: a net, its options and a seed."""

    name: str  # the run folder's name under the experiment's --out, e.g. "plain20-seed0"
    model: str
    group: str  # the panel/family it belongs to: "plain"/"resnet", a unit name, a shortcut option
    label: str  # the table's row label, e.g. "plain-20", "ResNet-56"
    depth: int
    seed: int = 0
    model_options: dict[str, Any] = field(default_factory=dict)
    published: float | None = None

    @property
    def key(self) -> str:
        """The net without the seed: seeds of one key are averaged in the table."""
        return self.name.rsplit("-seed", 1)[0]


@dataclass(frozen=True)
class Experiment:
    name: str
    title: str
    default_depths: tuple[int, ...]
    published_source: str
    one_depth: bool  # units and shortcuts compare variants at a single depth

    def groups(self) -> list[str]:
        """The families of nets this experiment compares ("plain"/"resnet", the unit names, the shortcut options)."""
        return list(dict.fromkeys(net["group"] for _, net in _NETS[self.name](self.default_depths[0])))

    def members(self, depths: Sequence[int] | None = None, seeds: int = 1, only: Sequence[str] | None = None) -> list[Member]:
        """Every net at every depth and seed; ``only`` keeps the named groups (e.g. ["resnet"] to rerun the
        residual half of the degradation experiment longer without retraining the plain nets)."""
        depths = tuple(depths) if depths else self.default_depths
        for depth in depths:
            if depth not in CIFAR_DEPTHS:
                raise ResNetError(f"--depths: {depth} is not one of the papers' CIFAR depths {', '.join(map(str, CIFAR_DEPTHS))}")
        if len(set(depths)) != len(depths):
            raise ResNetError(f"--depths: {','.join(map(str, depths))} names a depth twice")
        if self.one_depth and len(depths) != 1:
            raise ResNetError(f"--depths: the {self.name} experiment compares variants at one depth; give one, e.g. --depths 110")
        if seeds < 1:
            raise ResNetError(f"--seeds must be at least 1, got {seeds}")
        nets = [net for depth in depths for net in _NETS[self.name](depth)]
        if only is not None:
            unknown = [g for g in only if g not in self.groups()]
            if unknown or not only:
                raise ResNetError(f"--only: {','.join(unknown) or '(nothing)'} is not a group of the {self.name} experiment; "
                                  f"choose from {', '.join(self.groups())}")
            nets = [(key, net) for key, net in nets if net["group"] in only]
        return [Member(name=f"{key}-seed{seed}", seed=seed, **net) for seed in range(seeds) for key, net in nets]


def _degradation(depth: int) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"plain{depth}", dict(model=f"plain{depth}", group="plain", label=f"plain-{depth}", depth=depth)),
        (f"resnet{depth}", dict(model=f"resnet{depth}", group="resnet", label=f"ResNet-{depth}", depth=depth,
                                published=TABLE6.get(depth))),
    ]


def _units(depth: int) -> list[tuple[str, dict[str, Any]]]:
    # Identity Mappings' CIFAR nets project where dimensions grow (option B); the published figures
    # are for ResNet-110 only, so other depths print them for reference, labelled with their depth.
    return [(f"resnet{depth}-{unit}", dict(model=f"resnet{depth}", group=unit, label=f"ResNet-{depth} {name}", depth=depth,
                                            model_options={"unit": unit, "shortcut": "B"}, published=IDENTITY_TABLE2[unit]))
            for unit, name in UNIT_NAMES.items()]


def _shortcuts(depth: int) -> list[tuple[str, dict[str, Any]]]:
    return [(f"resnet{depth}-{option}", dict(model=f"resnet{depth}", group=option, label=f"ResNet-{depth} {SHORTCUT_NAMES[option]}",
                                              depth=depth, model_options={"shortcut": option}, published=TABLE3[option]))
            for option in SHORTCUT_NAMES]


_NETS = {"degradation": _degradation, "units": _units, "shortcuts": _shortcuts}

EXPERIMENTS: dict[str, Experiment] = {
    "degradation": Experiment("degradation", "plain vs residual nets of growing depth (He et al. 2015, Figure 6 and Table 6)",
                              (20, 32, 44, 56), TABLE6_SOURCE, one_depth=False),
    "units": Experiment("units", "the five residual-unit orderings (Identity Mappings, Figure 4 and Table 2)",
                        (110,), IDENTITY_TABLE2_SOURCE, one_depth=True),
    "shortcuts": Experiment("shortcuts", "shortcut options A, B, C on a CIFAR-style ResNet (He et al. 2015, Table 3)",
                            (32,), TABLE3_SOURCE, one_depth=True),
}


def get_experiment(name: str) -> Experiment:
    if name not in EXPERIMENTS:
        close = difflib.get_close_matches(name, list(EXPERIMENTS), n=2)
        hint = f"did you mean {', '.join(close)}?" if close else f"choose one of {', '.join(EXPERIMENTS)}"
        raise ResNetError(f"unknown experiment '{name}'; {hint}")
    return EXPERIMENTS[name]
