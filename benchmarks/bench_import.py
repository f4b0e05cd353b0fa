"""Parity of imported Paddle and TF-slim weights with the frameworks' own logits, and read times.

    .venv/bin/python benchmarks/bench_import.py [--full-paddle DIR] [--full-tfslim DIR]

Reads each fixture of tests/fixtures/{paddle,tfslim} (made by the real frameworks, see
scripts/fixtures/), builds our model from it, runs the fixture's fixed input and prints the max
absolute logit difference against the framework's logits, whether the top-1 agrees, and how long
reading and converting the file took (CRC32C checks included). ``--full-paddle`` / ``--full-tfslim``
add the full-size nets written by ``make_paddle_fixtures.py --full`` / ``make_tfslim_fixtures.py
--full`` (ResNet-50 at 224x224, ~100 MB each: a scratch check, not committed).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from resnet import device as hw
from resnet import report
from resnet.convert import paddle as paddle_format
from resnet.convert import tfslim
from resnet.convert.base import Imported
from resnet.models import create_model

FIXTURES = Path(__file__).parents[1] / "tests" / "fixtures"


def cases(full_paddle: Path | None, full_tfslim: Path | None) -> list[tuple[str, Path, Callable[[Path], Imported], Path]]:
    """(label, file, reader, reference .npz)."""
    out = []
    for folder, tag in ((FIXTURES / "paddle", "reduced"), (full_paddle, "full")):
        for name in ("resnet50", "resnet18", "resnext50"):
            stem = f"{name}_reduced" if tag == "reduced" else name.replace("resnext50", "resnext50_32x4d")
            if folder is not None:
                out.append((f"Paddle .pdparams, {name} {tag}", folder / f"{stem}.pdparams", paddle_format.read, folder / f"{stem}.npz"))
    for folder, tag in ((FIXTURES / "tfslim", "reduced"), (full_tfslim, "full")):
        for version in (1, 2):
            stem = f"resnet_v{version}_50" + ("_reduced" if tag == "reduced" else "")
            if folder is not None:
                out.append((f"TF-slim resnet_v{version}_50 {tag}, V2 bundle", folder / f"{stem}.index", tfslim.read, folder / f"{stem}.npz"))
                out.append((f"TF-slim resnet_v{version}_50 {tag}, V1 file", folder / f"{stem}.ckpt", tfslim.read, folder / f"{stem}.npz"))
    return out


def measure(path: Path, reader: Callable[[Path], Imported], reference: Path) -> tuple[float, bool, float, str]:
    start = time.perf_counter()
    imported = reader(path)
    model = create_model(imported.arch, num_classes=imported.num_classes, in_chans=imported.in_chans, **imported.options)
    model.load_state_dict(imported.state_dict, strict=True)
    seconds = time.perf_counter() - start
    ref = np.load(reference)
    x, expected = ref["x"], ref["logits"]
    if x.shape[-1] == 3:  # TF: NHWC input, 1001 classes with background first
        x, expected = x.transpose(0, 3, 1, 2), expected[:, 1:]
    with torch.no_grad():
        ours = model.eval()(torch.from_numpy(np.ascontiguousarray(x))).numpy()
    diff = float(np.abs(ours - expected).max())
    return diff, bool((ours.argmax(1) == expected.argmax(1)).all()), seconds, str(ref["framework"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full-paddle", type=Path, help="folder written by make_paddle_fixtures.py --full")
    parser.add_argument("--full-tfslim", type=Path, help="folder written by make_tfslim_fixtures.py --full")
    args = parser.parse_args()
    rows = []
    for label, path, reader, reference in cases(args.full_paddle, args.full_tfslim):
        diff, same_top1, seconds, framework = measure(path, reader, reference)
        size = path.stat().st_size + sum(p.stat().st_size for p in path.parent.glob(f"{path.stem}.data-*") if path.suffix == ".index")
        rows.append((label, f"{diff:.2e}", "yes" if same_top1 else "NO", f"{size / 1e6:.1f}", f"{seconds:.2f}", framework))
    report.table("imported logits against the framework's own", ["source", "max |diff|", "same top-1", "MB", "read s", "made by"], rows)
    report.result(hw.describe("cpu"))


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
