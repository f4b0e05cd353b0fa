"""resnet.optimize, quantize_onnx_int8 and `resnet bench`: parity per backend, fallbacks, bad calibration.

Small on purpose (a two-block residual net at 16x16), and never timed: the speed figures live in
benchmarks/speed.md, measured with `resnet bench`.
"""

from __future__ import annotations

import gc
import importlib
import json
import logging
import sys
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from conftest import fake_cpu_flags
from resnet.errors import ResNetError
from resnet.speed import FP32_MAX_ABS_DIFF, RELATIVE_TOLERANCE, check_calibration, fold_batchnorm, optimize


class Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(x + self.bn2(self.conv2(out)))


class TinyResNet(nn.Module):
    """A ResNet in miniature: stem, two basic blocks, pooled linear head."""

    def __init__(self, num_classes: int = 10, width: int = 8) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.blocks = nn.Sequential(Block(width), Block(width))
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.blocks(self.stem(x)).mean((2, 3)))


def _trained_like(seed: int = 0) -> nn.Module:
    """Random weights with non-trivial BatchNorm statistics, as after training (fresh BN is the identity)."""
    torch.manual_seed(seed)
    model = TinyResNet()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


@pytest.fixture(scope="module")
def model() -> nn.Module:
    return _trained_like()


@pytest.fixture(scope="module")
def calibration() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.randn(16, 3, 16, 16, generator=g) for _ in range(4)]


def _reference(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(x)


def test_fold_batchnorm_removes_bn_and_keeps_outputs(model: nn.Module) -> None:
    x = torch.randn(4, 3, 16, 16)
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules()), "the caller's model must be left alone"
    torch.testing.assert_close(_reference(folded, x), _reference(model, x), atol=1e-5, rtol=1e-5)


def test_fold_batchnorm_leaves_preactivation_bn() -> None:
    # BN after a ReLU (pre-activation) cannot go into a convolution: it must survive, outputs unchanged.
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 3)).eval()
    model[2].running_mean.uniform_(-1, 1)
    folded = fold_batchnorm(model)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in folded.modules()) == 1
    x = torch.randn(2, 3, 12, 12)
    torch.testing.assert_close(_reference(folded, x), _reference(model, x), atol=1e-5, rtol=1e-5)


def _backend_or_skip(backend: str) -> None:
    if backend == "onnxruntime":
        pytest.importorskip("onnxruntime")  # optional extra: resnet[deploy]
        pytest.importorskip("onnxscript")
    if backend == "openvino":
        pytest.importorskip("openvino")
        pytest.importorskip("onnxscript")


@pytest.mark.parametrize("backend", ["torch", "onnxruntime", "openvino"])
def test_fp32_parity(backend: str, model: nn.Module, calibration: list[torch.Tensor]) -> None:
    _backend_or_skip(backend)
    x = torch.randn(4, 3, 16, 16)
    fast = optimize(model, x, precision="fp32", backend=backend, compile=False)
    assert (fast.backend, fast.precision) == (backend, "fp32")
    assert fast.max_abs_diff <= FP32_MAX_ABS_DIFF
    # A new batch of another size: still the same function.
    fresh = torch.randn(7, 3, 16, 16)
    out = fast(fresh)
    assert out.shape == (7, 10) and out.dtype == torch.float32
    assert float((out - _reference(model, fresh)).abs().max()) <= FP32_MAX_ABS_DIFF


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_int8_parity(backend: str, model: nn.Module, calibration: list[torch.Tensor]) -> None:
    _backend_or_skip(backend)
    if backend == "openvino":
        pytest.importorskip("nncf")
    x = torch.randn(4, 3, 16, 16)
    fast = optimize(model, x, precision="int8", backend=backend, calibration=calibration)
    assert (fast.backend, fast.precision) == (backend, "int8")
    fresh = torch.cat(calibration[:2])  # the distribution the ranges were calibrated on
    ref = _reference(model, fresh)
    out = fast(fresh)
    error = float((out - ref).norm() / ref.norm())
    assert 0 < error <= RELATIVE_TOLERANCE["int8"], "int8 must differ a little, not a lot"
    assert fast.error <= fast.tolerance
    assert float((out.argmax(1) == ref.argmax(1)).float().mean()) >= 0.9


def test_int8_on_torch_backend_is_a_clear_error(model: nn.Module, calibration: list[torch.Tensor]) -> None:
    with pytest.raises(ResNetError, match="int8"):
        optimize(model, torch.randn(2, 3, 16, 16), precision="int8", backend="torch", calibration=calibration)


def _hide(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    """Make ``import X`` fail for each module, as on a machine without the deploy extras."""
    for name in list(sys.modules):
        if any(name == m or name.startswith(m + ".") for m in modules):
            monkeypatch.delitem(sys.modules, name)
    for m in modules:
        monkeypatch.setitem(sys.modules, m, None)


def test_auto_falls_back_to_torch_without_onnxruntime_and_openvino(
    model: nn.Module, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _hide(monkeypatch, "onnxruntime", "openvino")
    caplog.set_level(logging.INFO, logger="resnet")
    monkeypatch.setattr(logging.getLogger("resnet"), "propagate", True)
    fast = optimize(model, torch.randn(2, 3, 16, 16), precision="fp32", backend="auto", compile=False)
    assert fast.backend == "torch"
    assert fast.max_abs_diff <= FP32_MAX_ABS_DIFF
    text = caplog.text
    assert "onnxruntime not available" in text and "openvino not available" in text
    assert "uses torch" in text
    with pytest.raises(ResNetError, match=r"backend='openvino'.*resnet\[deploy\]"):
        optimize(model, torch.randn(2, 3, 16, 16), precision="fp32", backend="openvino")


def test_int8_without_engines_says_what_to_install(model: nn.Module, calibration: list[torch.Tensor],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    _hide(monkeypatch, "onnxruntime", "openvino")
    with pytest.raises(ResNetError, match="nothing can run precision=int8"):
        optimize(model, torch.randn(2, 3, 16, 16), precision="int8", calibration=calibration)


def test_auto_precision_follows_the_hardware(model: nn.Module, calibration: list[torch.Tensor],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    x = torch.randn(2, 3, 16, 16)
    fake_cpu_flags(monkeypatch, {"avx2", "fma"})  # a Zen 3: no native bf16, no VNNI -> fp32 only
    fast = optimize(model, x, backend="onnxruntime", calibration=calibration)
    assert {t["precision"] for t in fast.timings} == {"fp32"}
    fake_cpu_flags(monkeypatch, {"avx2", "avx512f", "avx512_vnni", "avx512_bf16"})  # a Zen 5
    fast = optimize(model, x, backend="onnxruntime", calibration=calibration)
    assert {t["precision"] for t in fast.timings} == {"fp32", "int8"}  # ORT has no bf16 path
    fast = optimize(model, x, backend="torch", compile=False, calibration=calibration)
    assert {t["precision"] for t in fast.timings} == {"fp32", "bf16"}  # torch has no int8 path
    assert fast.precision in ("fp32", "bf16") and fast.images_per_s > 0


def test_parity_failure_is_reported(model: nn.Module, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("resnet.export.parity.FP32_MAX_ABS_DIFF", -1.0)  # nothing can pass
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(ResNetError, match="no candidate passed the parity check"):
        optimize(model, torch.randn(2, 3, 16, 16), precision="fp32", backend="torch", compile=False)
    assert not list(tmp_path.glob("resnet-optimize-*"))  # a failed call leaves no work folder behind


def test_work_folder_lives_as_long_as_the_result(model: nn.Module, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    fast = optimize(model, torch.randn(2, 3, 16, 16), precision="fp32", backend="torch", compile=False)
    assert len(list(tmp_path.glob("resnet-optimize-*"))) == 1
    del fast
    gc.collect()
    assert not list(tmp_path.glob("resnet-optimize-*"))


@pytest.mark.parametrize(
    ("calibration", "message"),
    [
        (None, "needs calibration"),
        ([], "calibration is empty"),
        (5, "must be an iterable of input batches"),
        (["not a tensor"], "batch 0 is a str"),
        ([torch.randn(4, 1, 28, 28)], r"batch 0 has shape \(4, 1, 28, 28\), but the model takes \(N, 3, 16, 16\)"),
        ([torch.randn(4, 3, 16, 16), torch.randn(4, 3, 32, 32)], "batch 1 has shape"),
        ([torch.randint(0, 255, (4, 3, 16, 16), dtype=torch.uint8)], "dtype torch.uint8"),
        ([torch.full((4, 3, 16, 16), float("nan"))], "NaN or infinite"),
        ([torch.zeros(4, 3, 16, 16)], "one constant value"),
        ([torch.randn(3, 16, 16)], "has shape"),
    ],
)
def test_bad_calibration_is_a_clear_error(model: nn.Module, calibration: object, message: str) -> None:
    with pytest.raises(ResNetError, match=message):
        optimize(model, torch.randn(2, 3, 16, 16), precision="int8", calibration=calibration)


def test_calibration_from_a_broken_loader_is_a_clear_error() -> None:
    def loader():  # noqa: ANN202
        yield torch.randn(2, 3, 16, 16), torch.zeros(2, dtype=torch.long)
        raise OSError("truncated file")

    with pytest.raises(ResNetError, match="reading calibration batch 1 failed: OSError: truncated file"):
        check_calibration(loader(), (3, 16, 16))


def test_calibration_accepts_pairs_arrays_and_caps_samples() -> None:
    pairs = [(torch.randn(300, 3, 8, 8), torch.zeros(300)), (np.random.rand(300, 3, 8, 8).astype(np.float32), None)]
    batches = check_calibration(pairs, (3, 8, 8), limit=512)
    assert [b.shape[0] for b in batches] == [300, 212]
    assert all(b.dtype == torch.float32 for b in batches)


def test_quantize_onnx_int8_writes_a_runnable_int8_file(model: nn.Module, calibration: list[torch.Tensor], tmp_path) -> None:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    import onnx

    from resnet.export.onnx import export_onnx
    from resnet.speed import quantize_onnx_int8

    fp32 = export_onnx(model, calibration[0][:2], tmp_path / "m.onnx")
    out = quantize_onnx_int8(fp32, tmp_path / "m.int8.onnx", calibration)
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = torch.cat(calibration[2:])
    y = torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])
    ref = _reference(model, x)
    assert 0 < float((y - ref).norm() / ref.norm()) <= RELATIVE_TOLERANCE["int8"]
    with pytest.raises(ResNetError, match=r"has shape \(2, 3, 8, 8\), but the model takes \(N, 3, 16, 16\)"):
        quantize_onnx_int8(fp32, tmp_path / "bad.onnx", [torch.randn(2, 3, 8, 8)])
    assert not (tmp_path / "bad.onnx").exists()
    with pytest.raises(ResNetError, match="no such ONNX file"):
        quantize_onnx_int8(tmp_path / "missing.onnx", tmp_path / "x.onnx", calibration)
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(ResNetError, match="junk.onnx is not a loadable ONNX model"):
        quantize_onnx_int8(tmp_path / "junk.onnx", tmp_path / "x.onnx", calibration)


def test_bench_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from resnet.cli.main import main

    code = main(["-q", "bench", "--model", "resnet20", "--batch", "2", "--input", "16", "--against", "onnxruntime",
                 "--precision", "fp32", "--rounds", "1", "--round-seconds", "0.01", "--no-compile", "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert "CPU:" in result["header"]["device"]
    engines = {r["engine"]: r for r in result["rows"]}
    assert set(engines) == {"eager (ours, unoptimized)", "ours (resnet.optimize)", "onnxruntime"}
    assert engines["eager (ours, unoptimized)"]["ratio"] == pytest.approx(1.0)
    assert all(r["images_per_s"] > 0 and r["batch"] == 2 for r in result["rows"])


def test_bench_leaves_no_work_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from resnet.cli.main import main

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    code = main(["-q", "bench", "--model", "resnet20", "--batch", "2", "--input", "16", "--against", "onnxruntime",
                 "--precision", "fp32,int8", "--rounds", "1", "--round-seconds", "0.01", "--no-compile", "--json"])
    assert code == 0
    assert {(r["engine"], r["precision"]) for r in json.loads(capsys.readouterr().out)["rows"]} >= {
        ("onnxruntime", "fp32"), ("onnxruntime", "int8")}  # the peer's export served both precisions
    gc.collect()
    assert not list(tmp_path.glob("resnet-optimize-*"))


def test_bench_cli_rejects_bad_flags(capsys: pytest.CaptureFixture[str]) -> None:
    from resnet.cli.main import main

    assert main(["bench", "--against", "tensorrt"]) == 2
    assert "--against tensorrt: not one of" in capsys.readouterr().err
    assert main(["bench", "--batch", "1,x"]) == 2
    assert "--batch" in capsys.readouterr().err
    assert main(["bench", "--model", "resnet51"]) == 2
    assert "not a registered model" in capsys.readouterr().err


def test_wrong_example_input_is_a_clear_error(model: nn.Module) -> None:
    with pytest.raises(ResNetError, match=r"cannot run an input of shape \(2, 1, 16, 16\)"):
        optimize(model, torch.randn(2, 1, 16, 16), precision="fp32", backend="torch")
    with pytest.raises(ResNetError, match="example_input must be a float batch"):
        optimize(model, torch.randn(3, 16, 16), precision="fp32", backend="torch")
    with pytest.raises(ResNetError, match="precision 'fp16' is not one of"):
        optimize(model, torch.randn(2, 3, 16, 16), precision="fp16")


# --- a search that pays for itself: build budget, remembered choices, plain model for tiny jobs ------


def _info_log(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="resnet")
    monkeypatch.setattr(logging.getLogger("resnet"), "propagate", True)


def test_small_job_builds_only_what_can_pay_for_itself(model: nn.Module, monkeypatch: pytest.MonkeyPatch,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    _info_log(monkeypatch, caplog)
    calls: list[bool] = []
    torch_backend = importlib.import_module("resnet.speed.backends.torch_backend")
    real_runner = torch_backend._runner
    monkeypatch.setattr(torch_backend, "_runner", lambda m, d, *, compiled: calls.append(compiled) or real_runner(m, d, compiled=False))
    fast = optimize(model, torch.randn(4, 3, 16, 16), precision="fp32", backend="torch", job_images=40)
    assert calls == [False], "torch.compile (a minute to build) must not be built for a 40-image job"
    assert (fast.backend, fast.variant) == ("torch", "eager")
    assert "cannot pay for themselves" in caplog.text and "compile" in caplog.text


def test_choice_is_remembered_per_machine_weights_and_shape(model: nn.Module, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    _info_log(monkeypatch, caplog)
    cache = tmp_path / "choices.json"
    x = torch.randn(4, 3, 16, 16)
    first = optimize(model, x, precision="fp32", compile=False, cache=cache)
    entries = json.loads(cache.read_text())
    assert len(entries) == 1 and next(iter(entries.values()))["backend"] == first.backend
    assert len(first.timings) > 1 and "reused" not in caplog.text
    caplog.clear()
    second = optimize(model, x, precision="fp32", compile=False, cache=cache)
    assert (second.backend, second.precision, second.variant) == (first.backend, first.precision, first.variant)
    assert len(second.timings) == 1 and "reused this machine's choice" in caplog.text
    assert float((second(x) - _reference(model, x)).abs().max()) <= FP32_MAX_ABS_DIFF  # still parity-checked
    caplog.clear()
    optimize(model, torch.randn(2, 3, 16, 16), precision="fp32", compile=False, cache=cache)  # another shape
    other = _trained_like(seed=1)  # other weights
    optimize(other, x, precision="fp32", compile=False, cache=cache)
    assert "reused" not in caplog.text and len(json.loads(cache.read_text())) == 3


def test_fast_keeps_the_plain_model_for_a_tiny_job(model: nn.Module, monkeypatch: pytest.MonkeyPatch,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    from resnet.train.inference import fast_callable

    _info_log(monkeypatch, caplog)
    monkeypatch.setattr("resnet.optimize", lambda *a, **k: pytest.fail("one image must not start an engine search"))
    called: list[int] = []
    chosen = fast_callable(model, torch.randn(1, 3, 16, 16), calibration=lambda: called.append(1) or [], job_images=1)
    assert chosen is model and not called, "calibration data must not even be loaded for one image"
    assert "plain model runs" in caplog.text


# --- one speed core: engines found by file, one timing loop, one parity measure ----------------


def test_an_engine_is_one_file(model: nn.Module, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from resnet.speed import backends

    (tmp_path / "doubling_backend.py").write_text(
        "from resnet.speed.backends import Candidate\n"
        "NAME = 'doubling'\n"
        "def missing(): return None\n"
        "def supports(precision, device): return None if precision == 'fp32' else 'fp32 only'\n"
        "def candidates(job):\n"
        "    return [Candidate(NAME, 'fp32', 'plain', lambda: (lambda x: job.model(x)))]\n"
    )
    monkeypatch.setattr(backends, "__path__", [*backends.__path__, str(tmp_path)])
    monkeypatch.syspath_prepend(str(tmp_path))
    backends.engines.cache_clear()
    try:
        assert list(backends.engines())[0] == "torch" and "doubling" in backends.engines()
        fast = optimize(model, torch.randn(2, 3, 16, 16), precision="fp32", backend="doubling")
        assert (fast.backend, fast.variant) == ("doubling", "plain")
    finally:
        backends.engines.cache_clear()


def test_engines_and_quantization_do_not_import_the_optimizer() -> None:
    """The engines are below the optimizer and the bench: none of them imports either (no import cycle)."""
    import ast

    import resnet

    src = Path(resnet.__file__).parent
    files = [*sorted((src / "speed" / "backends").glob("*.py")), src / "export" / "quantize.py", src / "export" / "parity.py"]
    for path in files:
        imported = {node.module for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.ImportFrom)}
        assert not imported & {"resnet.speed.optimize", "resnet.speed.bench", "resnet.speed"}, path.name


def test_time_rounds_alternates_and_skips_warmup() -> None:
    from resnet.speed.timing import time_rounds

    order: list[str] = []
    seconds = time_rounds([lambda: order.append("a"), lambda: order.append("b")], rounds=2, min_round_s=0.0, warmup=1)
    assert order == ["a", "b", "a", "b", "a", "b"]  # one warm-up each, then rounds alternate
    assert len(seconds) == 2 and all(len(s) == 2 and min(s) >= 0 for s in seconds)


def test_one_parity_measure_with_tolerances_per_precision() -> None:
    from resnet.export.parity import FP32_TOLERANCE, compare

    ref = torch.tensor([[10.0, 0.0, -5.0], [0.0, 3.0, 2.9]])
    assert compare([ref + 5e-5], [ref], "fp32", same_graph=True).ok
    assert not compare([ref + 2 * FP32_TOLERANCE], [ref], "fp32", same_graph=True).ok
    assert compare([ref + 5e-3], [ref], "fp32").ok  # a rewritten graph: 1e-3 x the logit scale (10)
    assert not compare([ref + 2e-2], [ref], "fp32").ok
    near_tie = ref.clone()
    near_tie[1, 2] = 3.05  # the second sample's top-1 flips, but its margin (0.1) is a near-tie at 10% of 3
    assert compare([near_tie], [ref], "int8").ok
    flipped = ref.clone()
    flipped[0, 2] = 11.0  # a clear top-1 change
    result = compare([flipped], [ref], "int8")
    assert not result.ok and result.top1_flips == 1 and "int8" in result.criterion
    assert "shape" in compare([ref[:, :2]], [ref], "fp32").criterion


def test_a_budgeted_search_does_not_start_a_build_expected_to_overrun(model: nn.Module) -> None:
    """An engine's next candidate is expected to take as long to build as its last one did: with 0.25 s
    builds and a 0.4 s budget the second is not started (it would end the search 0.1 s over)."""
    import types

    optimize_module = importlib.import_module("resnet.speed.optimize")
    from resnet.speed.backends import Candidate, Job

    built: list[str] = []

    def slow(variant: str) -> Candidate:
        def build():
            time.sleep(0.25)
            built.append(variant)
            return lambda x: model(x)
        return Candidate("slowbuild", "fp32", variant, build)

    engine = types.SimpleNamespace(supports=lambda p, d: None, candidates=lambda job: [slow("first"), slow("second"), slow("third")])
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        reference = model.eval()(x).float()
    job = Job(model.eval(), x, "fp32")
    skipped: list[str] = []
    try:
        fast = optimize_module._choose(job, ["fp32"], {"slowbuild": engine}, torch.device("cpu"), [x], [reference], skipped,
                                       compile=False, precision="fp32", backend="slowbuild", budget_s=0.4)
    finally:
        shutil.rmtree(job.workdir, ignore_errors=True)
    assert built == ["first"] and fast.variant == "first"
    assert any("slowbuild fp32" in s and "cannot pay for themselves" in s for s in skipped), skipped


def test_a_budgeted_search_does_not_start_an_engine_whose_first_build_cannot_fit(model: nn.Module) -> None:
    """An engine not built yet is expected to cost an export (FIRST_BUILD_S): in a job whose whole budget is
    smaller, only the plain eager model is built, so --fast on a short job is never slower than plain."""
    import types

    optimize_module = importlib.import_module("resnet.speed.optimize")
    from resnet.speed.backends import Candidate, Job

    built: list[str] = []

    def candidate(backend: str, variant: str) -> Candidate:
        def build():
            built.append(backend)
            return lambda x: model(x)
        return Candidate(backend, "fp32", variant, build)

    engines = {
        "torch": types.SimpleNamespace(supports=lambda p, d: None, candidates=lambda job, compile=False: [candidate("torch", "eager")]),
        "exported": types.SimpleNamespace(supports=lambda p, d: None, candidates=lambda job: [candidate("exported", "fp32")]),
    }
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        reference = model.eval()(x).float()
    for budget, expected in [(optimize_module.FIRST_BUILD_S / 2, ["torch"]), (optimize_module.FIRST_BUILD_S * 4, ["torch", "exported"])]:
        built.clear()
        job = Job(model.eval(), x, "fp32")
        skipped: list[str] = []
        try:
            optimize_module._choose(job, ["fp32"], engines, torch.device("cpu"), [x], [reference], skipped,
                                    compile=False, precision="fp32", backend="auto", budget_s=budget)
        finally:
            shutil.rmtree(job.workdir, ignore_errors=True)
        assert built == expected, (budget, built, skipped)


def test_the_plain_job_threshold_is_what_one_engine_build_needs() -> None:
    """Below PLAIN_JOB_S of plain inference --fast keeps the plain model; that must be where the search's
    budget stops fitting an engine's first build, or short jobs pay for a search that cannot win."""
    from resnet.train import inference

    optimize_module = importlib.import_module("resnet.speed.optimize")
    assert inference.PLAIN_JOB_S * optimize_module.BUILD_BUDGET >= optimize_module.FIRST_BUILD_S
