"""Suite-wide settings, applied before torch is imported by any test module."""

import os

# Idle OpenMP threads sleep instead of spinning: tests start subprocesses (torchrun, resumed runs)
# beside the main one, and spinning threads on 2 oversubscribed cores slowed the suite several-fold.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Remembered choices (training precision, optimize's engines) go to a folder of this session, not ~/.cache:
# a test run neither reads what an earlier one measured nor leaves anything behind.
if "RESNET_CACHE" not in os.environ:
    import tempfile

    os.environ["RESNET_CACHE"] = tempfile.mkdtemp(prefix="resnet-test-cache-")

import dataclasses  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from resnet.data.testing import write_idx  # noqa: E402


def run_resnet_in_subprocess(argv: list[str], then: str = "") -> str:
    """`resnet ARGV...` in a fresh interpreter (one thread) that then prints whether torchvision got imported and
    runs the Python lines ``then``; its stdout. Start-up cost is what the tests using this guard."""
    script = (
        "import runpy, sys\n"
        f"sys.argv = {['resnet', *argv]!r}\n"
        "try:\n    runpy.run_module('resnet', run_name='__main__')\nexcept SystemExit as stop:\n    assert not stop.code, stop.code\n"
        "print('torchvision loaded:', 'torchvision' in sys.modules)\n" + then
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.fixture
def one_thread():
    """One torch thread for the test: training tests on a shared CPU avoid oversubscription stalls."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def fake_fashion_mnist(root, n_train: int = 160, n_test: int = 40, seed: int = 0):
    """Fashion-MNIST's exact on-disk layout (raw IDX files), with an easy pattern: a bright bar per class."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        for i, c in enumerate(labels):
            images[i, 2 + 2 * c : 4 + 2 * c, 4:24] = 220
        write_idx(root / f"{prefix}-images-idx3-ubyte", images, 0x00000803)
        write_idx(root / f"{prefix}-labels-idx1-ubyte", labels, 0x00000801)
    return root


@pytest.fixture(scope="module")
def fmnist(tmp_path_factory: pytest.TempPathFactory):
    return fake_fashion_mnist(tmp_path_factory.mktemp("fmnist"))


def randomize_norms(model: torch.nn.Module) -> torch.nn.Module:
    """Non-trivial BN statistics and affine parameters, so eval-mode comparisons exercise every norm."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
    return model


def fake_cpu_flags(monkeypatch: pytest.MonkeyPatch, flags: set[str]) -> None:
    """Make the ISA detection see a CPU with these /proc/cpuinfo flags (e.g. a Zen 3 or a Zen 5)."""
    from resnet import device as hw

    fake = dataclasses.replace(hw.cpu_info(), flags=frozenset(flags))
    monkeypatch.setattr(hw, "cpu_info", lambda: fake)
