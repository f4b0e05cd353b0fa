"""The shared pieces: hardware detection, atomic writes, the report layer, the CLI's error contract."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import torch

from resnet import device, io, report
from resnet.cli import main as cli
from resnet.errors import ResNetError


def test_cpu_info_reads_the_machine() -> None:
    info = device.cpu_info()
    assert info.capability == torch.backends.cpu.get_cpu_capability()
    line = device.describe("cpu")
    assert info.model in line and "native bf16" in line
    if Path("/proc/cpuinfo").exists():
        flags = Path("/proc/cpuinfo").read_text().split("flags", 1)[1].split("\n", 1)[0]
        # The decision flags follow the kernel's flag list, not a guess.
        assert info.native_bf16 == ("avx512_bf16" in flags.split() or "amx_bf16" in flags.split())
        assert info.native_int8 == bool({"avx512_vnni", "avx_vnni", "amx_int8"} & set(flags.split()))


def test_atomic_write_gives_the_usual_file_mode(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        target = io.atomic_write_text(tmp_path / "out.json", "{}")
    finally:
        os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o644


def test_native_bf16_is_false_for_meta_device() -> None:
    assert device.native_bf16("meta") is False


def test_atomic_write_keeps_old_file_when_writer_fails(tmp_path: Path) -> None:
    target = tmp_path / "ckpt.bin"
    io.atomic_write_bytes(target, b"old")

    def broken(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        io.atomic_write(target, broken)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.bin"]  # no temporary file left behind


def test_report_routes_messages_through_the_logger(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
    with caplog.at_level(logging.INFO, logger="resnet"):
        report.info("hello")
        report.warn("careful")
    assert "hello" in caplog.text and "warning: careful" in caplog.text
    report.table("T", ["name", "value"], [["a", 1], ["bb", 22]])
    out = capsys.readouterr().out
    assert "name" in out and "bb" in out and "22" in out


def test_cli_prints_one_line_error_without_traceback(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def failing(_args: object) -> int:
        raise ResNetError("file x.safetensors: key 'fc.weight' has shape (6, 512), model expects (10, 512)")

    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    sub = next(a for a in parser._actions if a.dest == "command")
    p = sub.add_parser("boom")
    p.set_defaults(func=failing)
    assert cli.main(["boom"]) == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and "Traceback" not in err
    assert err.startswith("resnet: error: file x.safetensors")


def test_cli_reports_os_errors_in_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def full(_args: object) -> int:
        raise OSError(28, "No space left on device", "/runs/x/last.safetensors")

    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    monkeypatch.delenv("RESNET_DEBUG", raising=False)
    sub = next(a for a in parser._actions if a.dest == "command")
    sub.add_parser("full").set_defaults(func=full)
    assert cli.main(["full"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "resnet: error: No space left on device (/runs/x/last.safetensors)"
