"""The run folder: its checks before anything is written, config.json's extra records, metrics files, resume."""

from __future__ import annotations

import csv
import io
import json
import platform
import shutil
from pathlib import Path
from typing import Any

import torch

from resnet.device import installed_version
from resnet.errors import ResNetError
from resnet.io import atomic_write_text
from resnet.train.checkpoint import STATE_SUFFIX
from resnet.train.config import TrainConfig, config_from_dict

METRIC_COLUMNS = (
    "epoch", "train_loss", "train_top1", "val_loss", "val_top1", "val_top5", "test_loss", "test_top1", "lr",
    "images_per_s", "seconds", "nonfinite_steps",
)
# What a run folder may contain: --overwrite removes exactly these, nothing the user put there.
RUN_FILES = ("config.json", "metrics.csv", "metrics.jsonl", "curves.png", "summary.json", "checkpoints", "tensorboard")


def prepare_run_dir(out: str | Path, *, resume: bool = False, overwrite: bool = False, write: bool = True) -> Path:
    """Check (and with ``write``, create) a run folder: refuses to clobber an existing run."""
    out = Path(out)
    if resume:
        if not (out / "checkpoints" / f"last{STATE_SUFFIX}").is_file():
            what = "does not exist" if not out.exists() else "has no checkpoint (checkpoints/last.state.pt) to resume from"
            raise ResNetError(f"cannot resume {out}: the run folder {what}")
        return out
    if out.exists() and not out.is_dir():
        raise ResNetError(f"--out {out} is a file, not a folder; choose another --out")
    existing = [name for name in RUN_FILES if (out / name).exists()]
    if existing and not overwrite:
        raise ResNetError(f"run folder {out} already holds a run ({', '.join(existing)}); "
                          f"continue it with --resume {out}, replace it with --overwrite, or choose another --out")
    if out.is_dir() and not existing and any(out.iterdir()) and not overwrite:
        raise ResNetError(f"--out {out} is a folder that is not empty; choose a new or empty folder (or pass --overwrite)")
    if not write:
        return out
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ResNetError(f"cannot write to run folder {out}: {exc.strerror or exc}; choose another --out") from None
    for name in existing:  # --overwrite: only what a run writes
        target = out / name
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    return out


def _metrics_text(history: list[dict[str, Any]]) -> tuple[str, str]:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=METRIC_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in METRIC_COLUMNS})
    jsonl = "".join(json.dumps(row) + "\n" for row in history)
    return buf.getvalue(), jsonl


def write_metrics(run_dir: Path, history: list[dict[str, Any]]) -> None:
    """Rewrite metrics.csv/.jsonl from the history: each epoch exactly once, whatever was killed when."""
    text_csv, text_jsonl = _metrics_text(history)
    atomic_write_text(run_dir / "metrics.csv", text_csv)
    atomic_write_text(run_dir / "metrics.jsonl", text_jsonl)


def versions() -> dict[str, str]:
    from resnet import __version__

    return {"resnet": __version__, "torch": torch.__version__,
            "torchvision": installed_version("torchvision") or "not installed", "python": platform.python_version()}


def dataset_info(train_data: Any, val_data: Any, test_data: Any) -> dict[str, Any]:
    return {
        "name": train_data.name, "class_names": list(train_data.class_names), "num_classes": train_data.num_classes,
        "in_chans": train_data.in_chans, "image_size": list(train_data.image_size),
        "mean": _listed(train_data.mean), "std": _listed(train_data.std),
        "train_size": len(train_data), "val_size": len(val_data) if val_data is not None else 0,
        "test_size": len(test_data) if test_data is not None else 0,
    }


def _listed(values: Any) -> list[float] | None:
    return list(values) if values is not None else None  # None: a torch Dataset normalized by its own transforms


def resume_config(run_dir: str | Path) -> TrainConfig:
    """The configuration a run folder was started with (its config.json)."""
    path = Path(run_dir) / "config.json"
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except OSError:
        raise ResNetError(f"cannot resume {run_dir}: no config.json there (is it a run folder?)") from None
    except ValueError as exc:
        raise ResNetError(f"cannot resume {run_dir}: config.json is damaged ({exc})") from None
    return config_from_dict(values)
