"""Entry point of the ``resnet`` command.

Each sub-command lives in its own module here with two functions: ``register(subparsers)`` adds its
parser (and ``set_defaults(func=run)``), ``run(args) -> int`` calls the library. Errors the user can
fix arrive as ``ResNetError`` and are printed as one line, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from resnet import __version__, report
from resnet.errors import ResNetError

SUBCOMMANDS = ("train", "evaluate", "predict", "models", "summary", "diagram", "export", "bench", "reproduce")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="resnet", description="Residual networks: train, evaluate, inspect, export, benchmark.")
    parser.add_argument("--version", action="version", version=f"resnet {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and results")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"resnet.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    report.configure(quiet=args.quiet, verbose=args.verbose)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except ResNetError as exc:
        print(f"resnet: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("resnet: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("resnet: error: out of memory; try a smaller --batch-size", file=sys.stderr)
        return 1
    except OSError as exc:
        # Disk full, permissions, a path that vanished: name the file and the reason in one line.
        if os.environ.get("RESNET_DEBUG"):
            raise
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        print(f"resnet: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
