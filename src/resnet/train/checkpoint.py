"""Checkpoints of a run: portable weights plus everything needed to resume exactly.

``NAME.safetensors`` holds the weights to use (the EMA weights when EMA is on) with the metadata
``resnet eval``/``predict`` need (class names, mean/std, image size). ``NAME.state.pt`` holds the
complete training state: the raw model weights, optimizer, scheduler, scaler, EMA, RNG states,
epoch/step counters and the metrics history. Resuming reads only the state file, so a kill between
the two writes can never pair weights of one epoch with optimizer state of another; each file is
itself written atomically (tmp file, fsync, rename).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from resnet.errors import ResNetError
from resnet.io import WriteError, atomic_write

STATE_SUFFIX = ".state.pt"
WEIGHTS_SUFFIX = ".safetensors"


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        # Plain lists: a numpy array would need the unsafe unpickler to load.
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_tuples(state["python"]))
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuples(value: Any) -> Any:
    # random.setstate insists on tuples; serialization may hand back lists.
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def _save_failed(path: Path, exc: OSError | WriteError) -> ResNetError:
    reason = exc.reason if isinstance(exc, WriteError) else exc.strerror or exc
    return ResNetError(
        f"could not save checkpoint {path}: {reason}; the previous checkpoint is intact "
        f"(free some space or fix permissions, then continue with --resume {path.parent.parent})"
    )


def save_checkpoint(
    directory: str | Path, name: str, *, weights_model: nn.Module, state: dict[str, Any] | None,
    metadata: dict[str, Any],
) -> Path:
    """Write ``NAME.state.pt`` (when ``state`` is given) then ``NAME.safetensors``; returns the weights path."""
    from resnet.models import save_weights

    directory = Path(directory)
    weights_path = directory / f"{name}{WEIGHTS_SUFFIX}"
    if state is not None:
        state_path = directory / f"{name}{STATE_SUFFIX}"
        try:
            atomic_write(state_path, lambda tmp: torch.save(state, tmp))
        except (OSError, WriteError) as exc:
            raise _save_failed(state_path, exc) from None
    try:
        save_weights(weights_model, weights_path, metadata=metadata)
    except (OSError, WriteError) as exc:
        raise _save_failed(weights_path, exc) from None
    return weights_path


def load_state(path: str | Path) -> dict[str, Any]:
    """A training state file, loaded without executing code (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise ResNetError(f"no training state at {path}; the run has no checkpoint to resume from yet")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a torn or foreign file: unpickling errors come in many types
        raise ResNetError(f"cannot read training state {path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(state, dict) or "model" not in state or "epoch" not in state:
        raise ResNetError(f"{path} is not a resnet training state file")
    return state
