"""The model zoo: registry, published parameter counts, every model's forward/backward, the
residual-unit orderings, shortcuts, options (norms, dilation, stochastic depth, checkpointing) and
backbone mode (features_only, frozen_stages, norm_eval)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import randomize_norms
from resnet.errors import ResNetError
from resnet.models import create_model, list_models
from resnet.models.resnet import BasicBlock, Bottleneck, ResidualBlock, ZeroPadShortcut


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def meta_model(name: str, **options: object) -> nn.Module:
    """The model built on the meta device: exact shapes and counts, no memory, no init cost."""
    with torch.device("meta"):
        return create_model(name, **options)


# --- registry -----------------------------------------------------------------------------------


def test_registry_has_every_family() -> None:
    names = set(list_models())
    expected = {
        "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnet200",
        "resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2",
        "resnet50_v1", "resnet101_v1", "resnet152_v1",
        "resnet50c", "resnet18d", "resnet34d", "resnet50d", "resnet101d", "resnet152d",
        "resnet50_v2", "resnet101_v2", "resnet152_v2", "preact_resnet110", "preact_resnet164", "preact_resnet1001",
        "resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet1202",
        "plain20", "plain32", "plain44", "plain56", "plain110", "plain18", "plain34",
    }  # fmt: skip
    assert expected <= names


def test_list_models_filters_and_sorts_naturally() -> None:
    assert list_models("resnet1*") == [
        "resnet18", "resnet18d", "resnet101", "resnet101_keras", "resnet101_v1", "resnet101_v2", "resnet101d",
        "resnet101v2_keras", "resnet110", "resnet152", "resnet152_keras", "resnet152_v1", "resnet152_v2", "resnet152d",
        "resnet152v2_keras", "resnet1202",
    ]  # fmt: skip
    assert list_models("plain*") == ["plain18", "plain20", "plain32", "plain34", "plain44", "plain56", "plain110"]
    assert list_models("nothing*") == []


def test_unknown_model_suggests_close_names() -> None:
    with pytest.raises(ResNetError, match=r"unknown model 'resnet5O'; did you mean .*resnet50"):
        create_model("resnet5O")


def test_bad_options_are_clear_errors() -> None:
    with pytest.raises(ResNetError, match="unknown option.*depht"):
        create_model("resnet20", depht=3)
    with pytest.raises(ResNetError, match="output_stride must be 8, 16 or 32"):
        create_model("resnet18", output_stride=4)
    with pytest.raises(ResNetError, match="unknown residual unit"):
        create_model("resnet20", unit="sideways")
    with pytest.raises(ResNetError, match="unknown norm_layer 'layernorm'"):
        create_model("resnet20", norm_layer="layernorm")
    with pytest.raises(ResNetError, match="unknown shortcut"):
        create_model("resnet20", shortcut="Z")


def test_model_records_how_it_was_built() -> None:
    model = create_model("resnet20", num_classes=6, in_chans=1, drop_path_rate=0.1, out_indices=None)
    assert model.model_name == "resnet20"
    assert model.model_options == {"drop_path_rate": 0.1, "out_indices": None}
    assert (model.num_classes, model.in_chans, model.num_features) == (6, 1, 64)
    rebuilt = create_model(model.model_name, num_classes=model.num_classes, in_chans=model.in_chans, **model.model_options)
    assert rebuilt.state_dict().keys() == model.state_dict().keys()


# --- published parameter counts ----------------------------------------------------------------

TORCHVISION_PARAMS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
}
CIFAR_PARAMS = {  # option A, 10 classes (He et al. 2015, table 6)
    "resnet8": 75_290,  # n=1, not in the table: 464 stem + 4,672 + 13,952 + 55,552 stages + 650 classifier
    "resnet20": 269_722,
    "resnet32": 464_154,
    "resnet44": 658_586,
    "resnet56": 853_018,
    "resnet110": 1_727_962,
    "resnet1202": 19_421_274,
}


@pytest.mark.parametrize("name,count", {**TORCHVISION_PARAMS, **CIFAR_PARAMS}.items())
def test_parameter_counts_match_published(name: str, count: int) -> None:
    assert num_params(meta_model(name)) == count


def test_plain_nets_have_the_parameters_of_their_residual_twins() -> None:
    # Option A and identity shortcuts are parameter-free, so removing them changes nothing but the graph.
    assert num_params(meta_model("plain20")) == CIFAR_PARAMS["resnet20"]
    assert num_params(meta_model("plain110")) == CIFAR_PARAMS["resnet110"]
    assert num_params(meta_model("plain18")) < TORCHVISION_PARAMS["resnet18"]  # loses its 3 projections
    assert not any(isinstance(m, ZeroPadShortcut) or getattr(m, "downsample", None) is not None for m in meta_model("plain34").modules())


def test_cifar_option_b_adds_projections() -> None:
    model = meta_model("resnet20", shortcut="B")
    # Two projections (16->32, 32->64), each a 1x1 conv plus a BN.
    assert num_params(model) == CIFAR_PARAMS["resnet20"] + (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)
    assert "layer2.0.downsample.0.weight" in model.state_dict()


def test_preact_cifar_nets_match_the_paper_sizes() -> None:
    # "Identity Mappings", table 2: ResNet-164 1.7M, ResNet-1001 10.2M parameters. This layout
    # (projection on each stage's first unit, final BN-ReLU) gives 1.70M and 10.33M.
    assert round(num_params(meta_model("preact_resnet164")) / 1e6, 2) == 1.70
    assert 10.2e6 <= num_params(meta_model("preact_resnet1001")) < 10.35e6


# --- every registered model ----------------------------------------------------------------------


# The two deepest nets cost more than all the others together at 64x64, so for them that size is
# checked on the meta device (shapes only); their real run is the small-input training step.
VERY_DEEP = {"resnet1202", "preact_resnet1001"}


@pytest.mark.parametrize("name", list_models())
def test_every_model_trains_and_predicts_six_classes(name: str) -> None:
    """One training step's forward and backward at a small input, then num_classes=6 at 64x64x3
    (the SIGNS shape) in eval mode."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=6)
    # The smallest input that still leaves >= 1x1 at the end, from the model itself (no list of CIFAR names).
    small = max(8, model.feature_info[-1]["reduction"])
    logits = model(torch.randn(2, 3, small, small))
    assert logits.shape == (2, 6)
    logits.logsumexp(1).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    if name in VERY_DEEP:
        assert meta_model(name, num_classes=6)(torch.empty(1, 3, 64, 64, device="meta")).shape == (1, 6)
        return
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 64))
    assert out.shape == (1, 6) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", list_models())
def test_every_model_takes_one_channel(name: str) -> None:
    # Shapes only (meta device: no memory, no compute); a real grayscale run is below.
    gray = meta_model(name, in_chans=1)
    first_conv = gray.conv1 if isinstance(gray.conv1, nn.Conv2d) else gray.conv1[0]  # plain or deep stem
    assert first_conv.in_channels == 1
    assert gray(torch.empty(2, 1, 32, 32, device="meta")).shape == (2, gray.num_classes)


def test_grayscale_model_runs_for_real() -> None:
    model = create_model("resnet20", in_chans=1).eval()
    assert model.conv1.weight.shape == (16, 1, 3, 3)
    with torch.no_grad():
        assert model(torch.randn(3, 1, 28, 28)).shape == (3, 10)  # Fashion-MNIST's shape


# torch.compile(fullgraph=True) traces every block, so its cost grows with depth (resnet1202 alone
# takes about a minute). Instead of compiling all models, these cases compile every distinct code
# path: each block kind (block x unit x with/without shortcut), each shortcut, each stem, each head,
# the backbone path and every option; the next test checks every registered model is made only of
# paths compiled here.
COMPILE_CASES = [
    ("resnet20", {}),
    ("plain20", {}),
    ("resnet20", {"unit": "full_preact", "shortcut": "B", "norm_layer": "groupnorm", "drop_path_rate": 0.1}),
    ("resnet18d", {"features_only": True, "output_stride": 8, "norm_layer": "frozen_batchnorm"}),
    ("resnet18", {}),
    ("resnet50d", {}),
    ("resnet50_v2", {}),
    # Other frameworks' stem pools and the subsampled identity (stage 1's strided second block).
    ("resnet50v2_keras", {"layers": (2, 1, 1, 1)}),
    ("resnet_v1_50_slim", {"layers": (2, 1, 1, 1)}),
    ("resnet_v2_50_slim", {"layers": (2, 1, 1, 1)}),
]


def _code_paths(model: nn.Module) -> set[tuple]:
    """What a trace of this model goes through: block kinds, shortcut kinds, stem, head (norm kinds merged)."""

    def kind(m: nn.Module | None) -> str:
        if m is None:
            return "none"
        if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)) or type(m).__name__ == "FrozenBatchNorm2d":
            return "norm"
        if isinstance(m, nn.Sequential):
            return "(" + ",".join(kind(c) for c in m) + ")"
        return type(m).__name__

    paths: set[tuple] = {("stem", kind(model.conv1), kind(model.bn1), kind(model.maxpool)), ("head", kind(model.final_norm))}
    for m in model.modules():
        if isinstance(m, ResidualBlock):
            paths.add(("block", type(m).__name__, m.unit, m.has_shortcut))
            paths.add(("shortcut", kind(m.downsample)))
    return paths


def test_compile_cases_cover_every_registered_model() -> None:
    covered = set().union(*(_code_paths(meta_model(name, **options)) for name, options in COMPILE_CASES))
    for name in list_models():
        assert _code_paths(meta_model(name)) <= covered, name


@pytest.mark.parametrize("name,options", COMPILE_CASES, ids=[f"{n}-{'-'.join(map(str, o.values())) or 'default'}" for n, o in COMPILE_CASES])
def test_fullgraph_compile(name: str, options: dict) -> None:
    torch.manual_seed(0)
    torch._dynamo.reset()  # a fresh cache per model, so recompile limits never trigger a fallback
    model = randomize_norms(create_model(name, **options)).eval()
    x = torch.randn(2, 3, 32, 32)
    compiled = torch.compile(model, fullgraph=True, backend="eager")  # graph capture, no slow codegen
    with torch.no_grad():
        expected, got = model(x), compiled(x)
    if isinstance(expected, list):
        assert all(torch.allclose(e, g) for e, g in zip(expected, got, strict=True))
    else:
        assert torch.allclose(expected, got)


@pytest.mark.parametrize("block_type", [BasicBlock, Bottleneck])
def test_every_unit_compiles_fullgraph(block_type: type[ResidualBlock]) -> None:
    for unit in ("original", "bn_after_add", "relu_before_add", "relu_preact", "full_preact"):
        torch._dynamo.reset()
        block = block_type(64, 16 if block_type is Bottleneck else 64, unit=unit).eval()
        x = torch.randn(2, 64, 8, 8)
        compiled = torch.compile(block, fullgraph=True, backend="eager")
        with torch.no_grad():
            assert torch.allclose(compiled(x), block(x)), unit


# --- the five residual units of "Identity Mappings", figure 4 ---------------------------------------


def _unit_reference(unit: str, b: BasicBlock, x: torch.Tensor) -> torch.Tensor:
    r = F.relu
    return {
        "original": lambda: r(b.bn2(b.conv2(r(b.bn1(b.conv1(x))))) + x),
        "bn_after_add": lambda: r(b.bn2(b.conv2(r(b.bn1(b.conv1(x)))) + x)),
        "relu_before_add": lambda: r(b.bn2(b.conv2(r(b.bn1(b.conv1(x)))))) + x,
        "relu_preact": lambda: b.bn2(b.conv2(r(b.bn1(b.conv1(r(x)))))) + x,
        "full_preact": lambda: b.conv2(r(b.bn2(b.conv1(r(b.bn1(x)))))) + x,
    }[unit]()


@pytest.mark.parametrize("unit", ["original", "bn_after_add", "relu_before_add", "relu_preact", "full_preact"])
def test_residual_unit_orderings_follow_figure_4(unit: str) -> None:
    torch.manual_seed(0)
    block = randomize_norms(BasicBlock(8, 8, unit=unit)).eval()
    x = torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        assert torch.allclose(block(x.clone()), _unit_reference(unit, block, x.clone()), atol=1e-6)
        assert torch.equal(block(x.clone()), block(x.clone()))  # no in-place damage to the input


def test_unit_letters_select_the_same_orderings() -> None:
    assert create_model("resnet20", unit="e").unit == "full_preact"
    assert create_model("resnet20", unit="c").layer1[0].unit == "relu_before_add"


def test_full_preact_net_normalises_at_the_end_not_the_stem() -> None:
    model = create_model("resnet50_v2")
    keys = model.state_dict().keys()
    assert "bn1.weight" not in keys and "final_norm.weight" in keys
    assert model.layer1[0].bn1.num_features == 64  # the first norm sees the block's input
    assert list(model.layer2[0].downsample) == [model.layer2[0].downsample[0]]  # projection without norm


# --- shortcuts and bottleneck variants --------------------------------------------------------------


def test_option_a_shortcut_subsamples_and_zero_pads() -> None:
    shortcut = ZeroPadShortcut(16, 32, stride=2)
    x = torch.randn(2, 16, 8, 8)
    y = shortcut(x)
    assert y.shape == (2, 32, 4, 4) and not list(shortcut.parameters())
    assert torch.equal(y[:, 8:24], x[:, :, ::2, ::2])
    assert y[:, :8].abs().sum() == 0 and y[:, 24:].abs().sum() == 0


def test_option_a_handles_odd_sizes() -> None:
    model = create_model("resnet20").eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 27, 27)).shape == (1, 10)


def test_v1_strides_on_the_first_1x1() -> None:
    v1, v15 = meta_model("resnet50_v1"), meta_model("resnet50")
    assert v1.layer2[0].conv1.stride == (2, 2) and v1.layer2[0].conv2.stride == (1, 1)
    assert v15.layer2[0].conv1.stride == (1, 1) and v15.layer2[0].conv2.stride == (2, 2)
    assert v1.state_dict().keys() == v15.state_dict().keys()


def test_resnet_d_shortcut_average_pools_before_projecting() -> None:
    model = meta_model("resnet50d")
    down = model.layer2[0].downsample
    assert isinstance(down[0], nn.AvgPool2d) and down[1].stride == (1, 1)
    assert isinstance(model.layer1[0].downsample[0], nn.Identity)  # stride 1: nothing to pool
    assert [type(m) for m in model.conv1] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU] * 2 + [nn.Conv2d]


# --- options ----------------------------------------------------------------------------------------


def test_zero_init_residual_starts_blocks_as_identity() -> None:
    model = create_model("resnet18", zero_init_residual=True)
    assert all(b.bn2.weight.abs().sum() == 0 for b in model.modules() if isinstance(b, BasicBlock))
    block = model.layer1[0].eval()
    x = torch.rand(1, 64, 8, 8)  # non-negative, as after a ReLU
    with torch.no_grad():
        assert torch.allclose(block(x), x)
    preact = create_model("resnet50_v2", zero_init_residual=True)
    assert all(b.conv3.weight.abs().sum() == 0 for b in preact.modules() if isinstance(b, Bottleneck))
    assert not torch.all(create_model("resnet18").layer1[0].bn2.weight == 0)


@pytest.mark.parametrize("norm,kind", [("groupnorm", nn.GroupNorm), ("frozen_batchnorm", "FrozenBatchNorm2d")])
def test_norm_layer_options(norm: str, kind: type | str) -> None:
    model = create_model("resnet20", norm_layer=norm)
    norms = [m for m in model.modules() if type(m).__name__ == (kind if isinstance(kind, str) else kind.__name__)]
    assert len(norms) == 19  # stem + 2 per block
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    model.train()
    model(torch.randn(1, 3, 16, 16)).sum().backward()  # batch of 1 in train mode: fine without BN


def test_frozen_batchnorm_loads_a_batchnorm_checkpoint() -> None:
    source = randomize_norms(create_model("resnet20")).eval()
    frozen = create_model("resnet20", norm_layer="frozen_batchnorm")
    frozen.load_state_dict(source.state_dict(), strict=True)  # num_batches_tracked is dropped
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(frozen.train()(x), source(x), atol=1e-5)  # frozen even in train mode
    assert num_params(frozen) < num_params(source)


def test_stochastic_depth_grows_with_depth_and_is_off_in_eval() -> None:
    torch.manual_seed(0)
    model = create_model("resnet20", drop_path_rate=0.2)
    blocks = [m for m in model.modules() if isinstance(m, ResidualBlock)]
    rates = [getattr(b.drop_path, "p", 0.0) for b in blocks]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.2) and rates == sorted(rates)
    x = torch.randn(4, 3, 16, 16)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
    model.train()
    outs = [model(x) for _ in range(4)]
    assert any(not torch.allclose(outs[0], o) for o in outs[1:])


def test_grad_checkpointing_gives_the_same_gradients() -> None:
    torch.manual_seed(0)
    model = create_model("resnet20")
    x = torch.randn(4, 3, 16, 16)
    model(x).square().sum().backward()
    expected = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.set_grad_checkpointing()
    assert model.grad_checkpointing
    model(x).square().sum().backward()
    assert all(torch.allclose(e, p.grad, atol=1e-5) for e, p in zip(expected, model.parameters(), strict=True))


def test_timm_interface() -> None:
    model = create_model("resnet50", num_classes=6).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.shape == (2, 2048, 2, 2) and model.num_features == 2048
        assert model.forward_head(features, pre_logits=True).shape == (2, 2048)
        assert torch.allclose(model.forward_head(features), model(x))
    assert model.get_classifier().out_features == 6
    model.reset_classifier(3)
    assert model.num_classes == 3 and model(x).shape == (2, 3)
    model.reset_classifier(0)
    assert model(x).shape == (2, 2048)
    assert [f["reduction"] for f in model.feature_info] == [2, 4, 8, 16, 32]


def test_drop_rate_is_dropout_before_the_classifier() -> None:
    model = create_model("resnet20", drop_rate=0.5)
    features = torch.ones(8, 64, 4, 4)
    model.train()
    assert (model.forward_head(features, pre_logits=True) == 0).any()
    model.eval()
    assert torch.equal(model.forward_head(features, pre_logits=True), torch.ones(8, 64))


# --- backbone mode --------------------------------------------------------------------------------------


def test_features_only_imagenet_strides_and_channels() -> None:
    model = create_model("resnet50", features_only=True).eval()
    with torch.no_grad():
        outs = model(torch.randn(2, 3, 64, 64))
    assert [o.shape[1:] for o in outs] == [(256, 16, 16), (512, 8, 8), (1024, 4, 4), (2048, 2, 2)]
    assert [f["num_chs"] for f in model.feature_info] == [256, 512, 1024, 2048]
    assert [f["reduction"] for f in model.feature_info] == [4, 8, 16, 32]
    assert [f["module"] for f in model.feature_info] == ["layer1", "layer2", "layer3", "layer4"]


def test_features_only_selected_indices_and_cifar() -> None:
    model = create_model("resnet18", features_only=True, out_indices=(0, 2)).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 64))
    assert [o.shape[1:] for o in outs] == [(64, 32, 32), (128, 8, 8)]
    assert [f["reduction"] for f in model.feature_info] == [2, 8]
    cifar = create_model("resnet20", features_only=True).eval()
    with torch.no_grad():
        assert [o.shape[1:] for o in cifar(torch.randn(1, 3, 32, 32))] == [(16, 32, 32), (32, 16, 16), (64, 8, 8)]
    assert [f["reduction"] for f in cifar.feature_info] == [1, 2, 4]
    with pytest.raises(ResNetError, match="out_indices"):
        create_model("resnet20", features_only=True, out_indices=(4,))


@pytest.mark.parametrize("name,output_stride,reductions", [("resnet50", 16, [4, 8, 16, 16]), ("resnet18", 8, [4, 8, 8, 8])])
def test_output_stride_by_dilation(name: str, output_stride: int, reductions: list[int]) -> None:
    model = create_model(name, features_only=True, output_stride=output_stride).eval()
    assert [f["reduction"] for f in model.feature_info] == reductions
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 64))
    assert [64 // o.shape[-1] for o in outs] == reductions


def test_dilated_bottleneck_matches_torchvision() -> None:
    torchvision = pytest.importorskip("torchvision")
    reference = randomize_norms(torchvision.models.resnet50(replace_stride_with_dilation=[False, True, True])).eval()
    ours = create_model("resnet50", output_stride=8).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert (ours(x) - reference(x)).abs().max() < 1e-4


def test_dilated_basic_block_matches_timm() -> None:
    timm = pytest.importorskip("timm")
    reference = randomize_norms(timm.create_model("resnet18", pretrained=False, output_stride=8)).eval()
    ours = create_model("resnet18", output_stride=8).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert (ours(x) - reference(x)).abs().max() < 1e-4


def _bn_stats(module: nn.Module) -> list[torch.Tensor]:
    return [t.clone() for m in module.modules() if isinstance(m, nn.BatchNorm2d) for t in (m.running_mean, m.running_var)]


def test_frozen_stages_get_no_gradients_and_keep_bn_statistics() -> None:
    torch.manual_seed(0)
    model = create_model("resnet18", features_only=True, frozen_stages=2)
    model.train()  # must not unfreeze the BNs
    frozen = [model.conv1, model.bn1, model.layer1, model.layer2]
    assert all(not m.training for m in frozen) and model.layer3.training
    before = [_bn_stats(m) for m in frozen]
    weights = [p.clone() for m in frozen for p in m.parameters()]
    live_before = _bn_stats(model.layer3)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(trainable, lr=0.1, momentum=0.9)
    sum(o.square().mean() for o in model(torch.randn(4, 3, 64, 64))).backward()
    optimizer.step()
    assert all(p.grad is None and not p.requires_grad for m in frozen for p in m.parameters())
    assert all(torch.equal(a, b) for a, b in zip(weights, (p for m in frozen for p in m.parameters()), strict=True))
    assert all(torch.equal(a, b) for m, stats in zip(frozen, before, strict=True) for a, b in zip(stats, _bn_stats(m), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(live_before, _bn_stats(model.layer3), strict=True))
    assert all(p.grad is not None for p in model.layer3.parameters())


def test_frozen_stem_only_with_zero() -> None:
    model = create_model("resnet20", frozen_stages=0)
    assert not model.conv1.weight.requires_grad and model.layer1[0].conv1.weight.requires_grad


def test_norm_eval_keeps_every_bn_in_eval() -> None:
    model = create_model("resnet20", norm_eval=True)
    model.train()
    assert model.training
    assert all(not m.training for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    before = _bn_stats(model)
    model(torch.randn(4, 3, 16, 16)).sum().backward()
    assert all(torch.equal(a, b) for a, b in zip(before, _bn_stats(model), strict=True))
    assert model.layer1[0].bn1.weight.grad is not None  # affine parameters still train


# --- the command line -----------------------------------------------------------------------------------


def test_cli_models_lists_names_with_parameter_counts(capsys: pytest.CaptureFixture[str]) -> None:
    from resnet.cli.main import main

    assert main(["models", "resnet[235]*", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["resnet20"]["params"] == 269_722 and rows["resnet50"]["params"] == 25_557_032
    assert rows["resnet20"]["num_classes"] == 10 and "resnet18" not in rows
    assert main(["models", "plain*"]) == 0
    table = capsys.readouterr().out
    assert "plain110" in table and "1,727,962" in table
    assert main(["models", "nomatch*"]) == 2
    assert "no model matches 'nomatch*'" in capsys.readouterr().err
