"""Outputs: the umask's usual file mode, and write failures as one `resnet: error:` line naming the path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import resnet
from resnet import io
from resnet.errors import ResNetError


@pytest.fixture
def umask_027():
    before = os.umask(0o027)  # unusual on purpose: the file must follow it, not a hard-coded 0644
    yield
    os.umask(before)


def test_current_umask_reads_without_changing_it(umask_027: None) -> None:
    assert io.current_umask() == 0o027
    assert io.current_umask() == 0o027


def test_safetensors_files_get_the_umask_mode(tmp_path: Path, umask_027: None) -> None:
    # The safetensors writer replaces the temporary file, so the mode must be set on what is renamed.
    path = resnet.save_weights(resnet.create_model("resnet20", widths=[4, 8, 16]), tmp_path / "w.safetensors")
    assert path.stat().st_mode & 0o777 == 0o640


def test_a_writer_that_replaces_the_temporary_file_still_gets_the_mode(tmp_path: Path, umask_027: None) -> None:
    def replace(tmp: Path) -> None:
        tmp.unlink()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, b"data")
        os.close(fd)

    assert io.atomic_write(tmp_path / "x.bin", replace).stat().st_mode & 0o777 == 0o640


def test_write_errors_name_the_path_not_the_temporary_file(tmp_path: Path) -> None:
    blocker = tmp_path / "existing_file"
    blocker.write_text("")
    with pytest.raises(ResNetError, match=r"cannot write .*existing_file/x\.onnx: .*existing_file is a file, not a folder"):
        io.atomic_write_bytes(blocker / "x.onnx", b"x")
    with pytest.raises(ResNetError, match=r"cannot write .*existing_file/deeper/x\.onnx"):
        io.atomic_write_bytes(blocker / "deeper" / "x.onnx", b"x")

    def full(tmp: Path) -> None:
        raise OSError(28, "No space left on device", str(tmp))

    with pytest.raises(ResNetError) as info:
        io.atomic_write(tmp_path / "big.bin", full)
    assert str(info.value) == f"cannot write {tmp_path / 'big.bin'}: No space left on device"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing_file"]  # nothing half-written left


def test_missing_parent_folders_are_created(tmp_path: Path) -> None:
    target = io.atomic_write_text(tmp_path / "new" / "deeper" / "out.txt", "hi")
    assert target.read_text() == "hi"


def _resnet(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "resnet", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("target, reason", [
    ("existing_file/x.onnx", "existing_file is a file, not a folder"),
    ("/proc/x.onnx", "/proc does not accept new files"),
])
def test_export_write_failures_end_in_one_error_line(tmp_path: Path, target: str, reason: str) -> None:
    (tmp_path / "existing_file").write_text("")
    done = _resnet("export", "--model", "resnet20", "-o", target, cwd=tmp_path)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert lines[-1] == f"resnet: error: cannot write {target}: {reason}" + (" (No such file or directory)" if target.startswith("/proc") else "")
    assert "Traceback" not in done.stderr and ".tmp" not in done.stderr


def test_export_creates_missing_folders(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from resnet.cli.main import main

    assert main(["export", "--model", "resnet20", "-o", str(tmp_path / "new" / "dir" / "x.pt")]) == 0, capsys.readouterr().err
    assert (tmp_path / "new" / "dir" / "x.pt").stat().st_mode & 0o777 == 0o666 & ~io.current_umask()
