"""Paddle and TF-slim weights imported without Paddle or TensorFlow, checked against the frameworks' own outputs.

The fixtures under tests/fixtures/{paddle,tfslim}/ were made by the real frameworks
(scripts/fixtures/make_paddle_fixtures.py, make_tfslim_fixtures.py): small random-weight nets with
randomized BatchNorm statistics, saved in the native formats, with each framework's logits on a
fixed input (and its version) in NAME.npz.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from conftest import randomize_norms
from resnet.convert import paddle as paddle_format
from resnet.convert import tfslim
from resnet.convert.base import Imported
from resnet.errors import ResNetError
from resnet.models import create_model

FIXTURES = Path(__file__).parent / "fixtures"
PADDLE = FIXTURES / "paddle"
TFSLIM = FIXTURES / "tfslim"
TOLERANCE = 1e-4
pytestmark = pytest.mark.usefixtures("one_thread")


def build(imported: Imported) -> nn.Module:
    model = create_model(imported.arch, num_classes=imported.num_classes, in_chans=imported.in_chans, **imported.options)
    model.load_state_dict(imported.state_dict, strict=True)
    return model.eval()


def logits(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def tf_reference(name: str) -> tuple[np.ndarray, np.ndarray]:
    """The fixed input as NCHW and TF's logits without the background class."""
    ref = np.load(TFSLIM / f"{name}.npz")
    return np.ascontiguousarray(ref["x"].transpose(0, 3, 1, 2)), ref["logits"][:, 1:]


def assert_parity(ours: np.ndarray, theirs: np.ndarray) -> float:
    diff = float(np.abs(ours - theirs).max())
    assert ours.shape == theirs.shape
    assert diff <= TOLERANCE, diff
    assert (ours.argmax(1) == theirs.argmax(1)).all()
    return diff


# --- parity with the source framework -----------------------------------------------------------


@pytest.mark.parametrize(
    "name,arch,classes,groups",
    [("resnet50_reduced", "resnet50", 10, None), ("resnet18_reduced", "resnet18", 7, None), ("resnext50_reduced", "resnet50", 5, (4, 16))],
)
def test_paddle_import_matches_paddle(name: str, arch: str, classes: int, groups: tuple[int, int] | None) -> None:
    path = PADDLE / f"{name}.pdparams"
    assert paddle_format.detect(path) and not tfslim.detect(path)
    imported = paddle_format.read(path)
    assert (imported.arch, imported.num_classes, imported.source) == (arch, classes, "paddle")
    assert imported.options["widths"] == [8, 16, 32, 64]  # read from the shapes, not assumed
    assert imported.class_names is None  # ImageNet names only for a 1000-class head
    assert (imported.options.get("groups"), imported.options.get("width_per_group")) == (groups or (None, None))
    ref = np.load(PADDLE / f"{name}.npz")
    assert str(ref["framework"]).startswith("paddlepaddle ")
    assert_parity(logits(build(imported), ref["x"]), ref["logits"])


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("form", ["index", "prefix", "data", "v1-file"])
def test_tfslim_import_matches_tensorflow(version: int, form: str) -> None:
    name = f"resnet_v{version}_50_reduced"
    path = {
        "index": TFSLIM / f"{name}.index",
        "prefix": TFSLIM / name,
        "data": TFSLIM / f"{name}.data-00000-of-00001",
        "v1-file": TFSLIM / f"{name}.ckpt",  # tf.train.Saver(write_version=V1)
    }[form]
    assert tfslim.detect(path) and not paddle_format.detect(path)
    imported = tfslim.read(path)
    assert imported.arch == f"resnet_v{version}_50_slim"
    assert imported.options == {"layers": [1, 2, 2, 1], "widths": [64, 16, 16, 16]}
    assert imported.num_classes == 1000 and any("background" in note for note in imported.notes)
    assert imported.class_names is not None and imported.class_names[0] == "tench" and len(imported.class_names) == 1000
    x, expected = tf_reference(name)
    assert_parity(logits(build(imported), x), expected)


def test_v1_and_v2_checkpoint_formats_hold_the_same_tensors() -> None:
    from resnet.convert.tfcheckpoint import read_checkpoint

    bundle = read_checkpoint(TFSLIM / "resnet_v2_50_reduced.index")
    single = read_checkpoint(TFSLIM / "resnet_v2_50_reduced.ckpt")
    assert set(bundle) == set(single) and len(bundle) > 100
    assert all(np.array_equal(bundle[k], single[k]) for k in bundle)


def test_fixtures_punish_bn_and_padding_mistakes() -> None:
    """The randomized statistics and TF's bottom/right pool padding both move the logits far past the tolerance."""
    imported = tfslim.read(TFSLIM / "resnet_v1_50_reduced.index")
    x, expected = tf_reference("resnet_v1_50_reduced")
    symmetric = create_model(imported.arch, num_classes=1000, pool_padding="symmetric", **imported.options)
    symmetric.load_state_dict(imported.state_dict)
    assert np.abs(logits(symmetric.eval(), x) - expected).max() > 100 * TOLERANCE
    no_stats = {k: (torch.ones_like(v) if k.endswith("running_var") else v) for k, v in imported.state_dict.items()}
    plain = create_model(imported.arch, num_classes=1000, **imported.options)
    plain.load_state_dict(no_stats)
    assert np.abs(logits(plain.eval(), x) - expected).max() > 100 * TOLERANCE


# --- export back to Paddle ----------------------------------------------------------------------


def test_paddle_write_round_trips(tmp_path: Path) -> None:
    imported = paddle_format.read(PADDLE / "resnet50_reduced.pdparams")
    model = build(imported)
    out = paddle_format.write(model, tmp_path / "again.pdparams")
    raw = pickle.loads(out.read_bytes())
    # Paddle's names and layouts: _mean/_variance, Linear (in, out), no BN counters.
    assert raw["fc.weight"].shape == (256, 10) and "bn1._variance" in raw
    assert not any(k.endswith(("running_var", "num_batches_tracked")) for k in raw)
    original = paddle_format.read_arrays(PADDLE / "resnet50_reduced.pdparams")
    assert set(raw) == set(original)
    assert all(np.array_equal(raw[k], original[k]) for k in original)
    again = build(paddle_format.read(out))
    x = np.load(PADDLE / "resnet50_reduced.npz")["x"]
    assert np.array_equal(logits(again, x), logits(model, x))


@pytest.mark.parametrize(
    "arch,options",
    [("resnext50_32x4d", {"layers": [1, 2, 1, 1], "widths": [16, 16, 32, 32], "groups": 4, "width_per_group": 16}), ("resnet34", {"layers": [1, 1, 1, 1], "widths": [8, 8, 16, 16]})],
)
def test_paddle_write_then_read_rebuilds_grouped_and_basic_nets(tmp_path: Path, arch: str, options: dict[str, object]) -> None:
    model = randomize_norms(create_model(arch, num_classes=5, **options)).eval()
    imported = paddle_format.read(paddle_format.write(model, tmp_path / "net.pdparams"))
    # Groups and width per group come back from the conv shapes; the family from the block type.
    assert {k: imported.options[k] for k in options} == options
    x = torch.randn(2, 3, 64, 64).numpy()
    assert np.array_equal(logits(build(imported), x), logits(model, x))


@pytest.mark.parametrize(
    "arch,options,why",
    [
        ("resnet_v2_50_slim", {}, "its residual unit is 'full_preact'"),
        ("resnet20", {}, "its stem is not a single 7x7/2 conv"),
        ("resnet50_v1", {}, "layer2.0 strides where Paddle's does not"),
        ("resnet18", {"shortcut": "C"}, "layer1.0's shortcut is not Paddle's"),
        ("resnet50_keras", {}, "layer2.0 strides where Paddle's does not"),
    ],
)
def test_paddle_write_refuses_what_paddle_cannot_build(tmp_path: Path, arch: str, options: dict[str, object], why: str) -> None:
    small = {} if arch == "resnet20" else {"layers": [1, 1, 1, 1], "widths": [8, 8, 8, 8]}
    model = create_model(arch, num_classes=3, **small, **options)
    with pytest.raises(ResNetError, match=f"cannot write {arch} for Paddle: {why}") as err:
        paddle_format.write(model, tmp_path / "x.pdparams")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "x.pdparams").exists()


# --- untrusted and damaged files ----------------------------------------------------------------


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def test_malicious_pdparams_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pdparams"
    path.write_bytes(pickle.dumps({"conv1.weight": np.zeros((8, 3, 7, 7), np.float32), "x": _RunsCode(marker)}, protocol=4))
    with pytest.raises(ResNetError, match=r"refusing to load .*evil\.pdparams: refusing (posix|os)\.system") as err:
        paddle_format.read(path)
    assert "\n" not in str(err.value)
    assert not marker.exists()
    pickle.loads(path.read_bytes())  # the premise: a plain unpickler would have run it
    assert marker.exists()


@pytest.mark.parametrize(
    "damage",
    ["truncated index", "truncated data", "flipped data byte", "truncated v1 file", "flipped v1 byte", "missing data", "truncated pdparams"],
)
def test_damaged_checkpoint_is_one_line(tmp_path: Path, damage: str) -> None:
    for source in (*TFSLIM.glob("resnet_v1_50_reduced.*"), PADDLE / "resnet18_reduced.pdparams"):
        (tmp_path / source.name).write_bytes(source.read_bytes())
    index, data = tmp_path / "resnet_v1_50_reduced.index", tmp_path / "resnet_v1_50_reduced.data-00000-of-00001"
    v1, pdparams = tmp_path / "resnet_v1_50_reduced.ckpt", tmp_path / "resnet18_reduced.pdparams"
    target, reader, expected = {
        "truncated index": (index, tfslim.read, "magic number"),
        "truncated data": (data, tfslim.read, "past the end of data shard"),
        "flipped data byte": (data, tfslim.read, "fails its checksum"),
        "truncated v1 file": (v1, tfslim.read, "magic number"),
        "flipped v1 byte": (v1, tfslim.read, "fails its checksum"),
        "missing data": (data, tfslim.read, "data file .* is missing"),
        "truncated pdparams": (pdparams, paddle_format.read, "damaged"),
    }[damage]
    raw = bytearray(target.read_bytes())
    if damage.startswith("truncated"):
        target.write_bytes(raw[: len(raw) // 2])
    elif damage.startswith("flipped"):
        raw[len(raw) // 3] ^= 0x10
        target.write_bytes(raw)
    else:
        target.unlink()
    path = index if target is data else target
    with pytest.raises(ResNetError, match=expected) as err:
        reader(path)
    assert "\n" not in str(err.value) and path.name in str(err.value)


def test_not_a_resnet_checkpoint_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "weights.pdparams"
    path.write_bytes(pickle.dumps({"encoder.weight": np.zeros((2, 2), np.float32)}, protocol=4))
    with pytest.raises(ResNetError, match="weights.pdparams has no layer1.0"):
        paddle_format.read(path)
    assert not tfslim.detect(path) and not tfslim.detect(PADDLE / "resnet50_reduced.npz")


# --- the format primitives ----------------------------------------------------------------------


def test_crc32c_matches_a_bitwise_reference() -> None:
    from resnet.convert.crc32c import SERIAL_BELOW, crc32c

    def bitwise(data: bytes) -> int:
        crc = 0xFFFFFFFF
        for byte in data:
            crc ^= byte
            for _ in range(8):
                crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
        return crc ^ 0xFFFFFFFF

    assert crc32c(b"123456789") == 0xE3069283  # the standard check value
    rng = np.random.default_rng(0)
    for size in (0, 1, 9, SERIAL_BELOW - 1, SERIAL_BELOW + 13, 3 * SERIAL_BELOW + 5):  # serial and lane paths
        data = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        assert crc32c(data) == bitwise(data), size


def test_snappy_blocks_decompress_like_the_reference_codec() -> None:
    import importlib.util

    from resnet.convert.tfcheckpoint import CorruptCheckpoint, snappy_decompress

    spec = importlib.util.spec_from_file_location("make_snappy_vector", Path(__file__).parents[1] / "scripts/fixtures/make_snappy_vector.py")
    assert spec is not None and spec.loader is not None
    maker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(maker)
    compressed = (TFSLIM / "snappy_vector.bin").read_bytes()
    assert snappy_decompress(compressed) == maker.snappy_vector_source()
    with pytest.raises(CorruptCheckpoint):
        snappy_decompress(compressed[: len(compressed) // 2])


def test_v1_tensor_protos_in_every_encoding() -> None:
    """Besides the packed float_val TF writes, the fixed-width, varint and tensor_content forms."""
    import struct

    from resnet.convert.tfcheckpoint import _proto_values, message

    def varint(v: int) -> bytes:
        v &= (1 << 64) - 1
        out = b""
        while v >= 0x80:
            out, v = out + bytes([v & 0x7F | 0x80]), v >> 7
        return out + bytes([v])

    unpacked_floats = b"".join(bytes([5 << 3 | 5]) + struct.pack("<f", f) for f in (1.5, -2.0))
    assert _proto_values(message(unpacked_floats), 1).tolist() == [1.5, -2.0]
    packed_int64 = bytes([10 << 3 | 2]) + varint(len(varint(-3) + varint(7))) + varint(-3) + varint(7)
    assert _proto_values(message(packed_int64), 9).tolist() == [-3, 7]
    unpacked_int32 = bytes([7 << 3]) + varint(-1) + bytes([7 << 3]) + varint(42)
    assert _proto_values(message(unpacked_int32), 3).tolist() == [-1, 42]
    content = np.arange(3, dtype="<f8").tobytes()
    assert _proto_values(message(bytes([4 << 3 | 2]) + varint(len(content)) + content), 2).tolist() == [0.0, 1.0, 2.0]


# --- through the command ------------------------------------------------------------------------


def resnet_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "resnet", *args], capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.slow  # two fresh interpreters importing torch
def test_cli_converts_a_tfslim_v1_file_then_exports_paddle(tmp_path: Path) -> None:
    from resnet.models import model_from_checkpoint, read_metadata

    out = tmp_path / "slim.safetensors"
    done = resnet_cli("convert", str(TFSLIM / "resnet_v1_50_reduced.ckpt"), "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert "background" in done.stdout + done.stderr
    assert read_metadata(out)["converted_from"]["source"] == "tf-slim"
    model, _ = model_from_checkpoint(out)  # the header alone rebuilds resnet_v1_50_slim with its options
    x, expected = tf_reference("resnet_v1_50_reduced")
    assert_parity(logits(model.eval(), x), expected)
    # A TF-slim v1 net is post-activation with torchvision's weights, but it strides in each stage's
    # last unit and pads its max-pool TF's way: Paddle's ResNet cannot express that, so it is refused.
    refused = resnet_cli("convert", str(out), "-o", str(tmp_path / "slim.pdparams"), "--to", "paddle")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.strip().splitlines() == [refused.stderr.strip()] and "for Paddle" in refused.stderr
    assert not (tmp_path / "slim.pdparams").exists()


@pytest.mark.slow  # a fresh interpreter importing torch
def test_cli_refuses_a_malicious_pdparams_in_one_line(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pdparams"
    path.write_bytes(pickle.dumps({"fc.weight": np.zeros((4, 2), np.float32), "x": _RunsCode(marker)}, protocol=4))
    done = resnet_cli("convert", str(path), "-o", str(tmp_path / "out.safetensors"))
    assert done.returncode == 2
    assert done.stderr.strip().startswith("resnet: error: refusing to load") and "\n" not in done.stderr.strip()
    assert not marker.exists() and not (tmp_path / "out.safetensors").exists()


def test_import_weights_takes_a_tfslim_checkpoint_prefix() -> None:
    """TF's own way to name a V2 checkpoint is its prefix (model.ckpt), which exists only as .index + .data-*."""
    import resnet

    model = resnet.import_weights(TFSLIM / "resnet_v2_50_reduced")
    assert model.converted_from["source"] == "tf-slim" and model.converted_from["file"] == "resnet_v2_50_reduced"
    x, expected = tf_reference("resnet_v2_50_reduced")
    assert_parity(logits(model, x), expected)
