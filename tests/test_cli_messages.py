"""The command's own messages: a misspelled flag names its sub-command and the flag meant; every --help says what it does."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import pytest

from resnet.cli.main import SUBCOMMANDS, build_parser, main


def _resnet(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "resnet", *args], env=env, capture_output=True, text=True, timeout=120)


def test_misspelled_flag_shows_the_subcommand_usage_and_suggests_the_flag() -> None:
    done = _resnet("train", "--modle", "resnet20")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("usage: resnet train ")  # the sub-command's usage, not the top level's
    assert "usage: resnet [-h]" not in done.stderr and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == "resnet: error: unrecognized arguments: --modle (did you mean --model?) resnet20"


def test_unknown_flags_without_a_close_match(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", "resnet20", "--depht", "3", "--zzz"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: resnet summary ")
    assert err.strip().splitlines()[-1] == "resnet: error: unrecognized arguments: --depht (did you mean --depth?) 3 --zzz"


def test_bench_help_says_what_it_does() -> None:
    done = _resnet("bench", "--help")
    assert done.returncode == 0
    description = done.stdout.split("\n\n")[1]  # usage, then the description paragraph
    assert "Images/s" in description and "ONNX Runtime" in description and not description.startswith("options")


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_every_subcommand_help_has_a_description(name: str) -> None:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    parser = next(p for command, p in sub.choices.items() if p.prog.endswith(" " + name.replace("evaluate", "eval")))
    assert parser.description and len(parser.description.split()) >= 5, name
    assert parser.format_help().split("\n\n")[1].strip()  # shown between the usage and the options
