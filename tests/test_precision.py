"""Training precision on a CPU: bf16 autocast only where it measures faster, remembered, kept by a resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

from conftest import fake_cpu_flags
from resnet import create_model
from resnet.train import fit, resolve_config
from resnet.train import precision

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("resnet20", num_classes=4, in_chans=1, widths=[4, 8, 16])


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RESNET_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "train-precision.json"


def fake_speedup(monkeypatch: pytest.MonkeyPatch, ratio: float) -> list[int]:
    calls: list[int] = []
    monkeypatch.setattr(precision, "_bf16_speedup", lambda *a, **k: (calls.append(1), ratio)[1])
    return calls


def test_without_native_bf16_it_is_fp32_and_nothing_is_timed(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cpu_flags(monkeypatch, {"avx2", "fma"})  # a Zen 3
    calls = fake_speedup(monkeypatch, 9.0)
    dtype, why = precision.choose_cpu_amp(tiny(), (1, 12, 12), channels_last=True)
    assert dtype is None and why == "fp32 (this CPU has no native bf16)" and not calls and not cache.exists()


@pytest.mark.parametrize("ratio, expected", [(0.79, None), (1.02, None), (1.6, torch.bfloat16)])
def test_bf16_only_where_it_measures_faster_and_the_choice_is_remembered(cache, monkeypatch, ratio, expected) -> None:
    fake_cpu_flags(monkeypatch, {"avx512f", "avx512_bf16"})  # the flag alone, as on an Intel guest without AMX
    calls = fake_speedup(monkeypatch, ratio)
    dtype, why = precision.choose_cpu_amp(tiny(), (1, 12, 12), channels_last=True)
    assert dtype is expected and f"{ratio:.2f}x" in why and "measured on this CPU" in why and len(calls) == 1
    again, why_again = precision.choose_cpu_amp(tiny(), (1, 12, 12), channels_last=True)
    assert again is expected and "remembered" in why_again and len(calls) == 1  # no second timing
    precision.choose_cpu_amp(tiny(), (1, 16, 16), channels_last=True)  # another input size is another question
    assert len(calls) == 2 and len(json.loads(cache.read_text())) == 2


def test_the_timing_leaves_the_model_and_the_random_state_alone() -> None:
    model = tiny()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    ratio = precision._bf16_speedup(model, (1, 12, 12), channels_last=True)
    assert 0.05 < ratio < 20
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(rng, torch.get_rng_state())


def test_training_uses_the_choice_and_a_resume_keeps_the_recorded_one(cache, monkeypatch, tmp_path, caplog) -> None:
    fake_cpu_flags(monkeypatch, {"avx512f", "avx512_bf16"})
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 4, (32,), generator=g)
    data = TensorDataset(torch.randn(32, 1, 12, 12, generator=g) + y.view(-1, 1, 1, 1), y)
    config = resolve_config({"epochs": 2, "batch_size": 16, "lr": 0.05, "schedule": "cosine"})  # amp: auto
    assert config.amp is None
    fake_speedup(monkeypatch, 1.6)
    with caplog.at_level("INFO", logger="resnet"):
        fit(tiny(), data, None, config.__class__(**{**config.to_dict(), "epochs": 1}), out=tmp_path / "run", verbose=1)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["amp_dtype"] == "bfloat16"
    assert any("precision: bf16 autocast (1.60x fp32's training speed" in r.getMessage() for r in caplog.records)
    cache.unlink()  # a new timing now would say fp32 ...
    fake_speedup(monkeypatch, 0.5)
    fit(tiny(), data, None, config, out=tmp_path / "run", resume=True, verbose=0)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["amp_dtype"] == "bfloat16" and saved["num_epochs"] == 2  # ... but the resumed run keeps bf16
    fresh = fit(tiny(), data, None, config, out=tmp_path / "fresh", verbose=0)
    assert fresh is not None and json.loads((tmp_path / "fresh" / "config.json").read_text())["amp_dtype"] is None
