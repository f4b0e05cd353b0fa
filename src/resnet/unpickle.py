"""Pickles of plain containers and numpy arrays, read with an unpickler that cannot run code.

``pickle.load`` on a tampered file runs whatever its ``__reduce__`` names. ``NumpyUnpickler``
admits only the globals that numpy array reconstruction needs; any other global is refused
before it is even imported. Used for the CIFAR batches and Paddle's ``.pdparams``.
"""

from __future__ import annotations

import codecs
import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from resnet.errors import ResNetError

# numpy's array/dtype reconstruction, resolved from numpy itself rather than by module path, which
# moved in numpy 2 (numpy.core -> numpy._core): files written under either still load.
NUMPY_GLOBALS: dict[tuple[str, str], Any] = {}
for _module in ("numpy.core.multiarray", "numpy._core.multiarray"):
    NUMPY_GLOBALS[(_module, "_reconstruct")] = np.array(0).__reduce__()[0]
    NUMPY_GLOBALS[(_module, "scalar")] = np.float64(0).__reduce__()[0]
NUMPY_GLOBALS[("numpy", "ndarray")] = np.ndarray
NUMPY_GLOBALS[("numpy", "dtype")] = np.dtype
# Python 3 pickles bytes at protocol 2 as _codecs.encode(text, "latin1"): a pure conversion.
NUMPY_GLOBALS[("_codecs", "encode")] = codecs.encode

# What a caught exception means when reading a damaged (not a malicious) pickle.
DAMAGED = (pickle.UnpicklingError, OSError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, MemoryError)


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle names a global outside the allowed few: never imported, never called."""


class NumpyUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays; any other global raises ``RefusedGlobal``."""

    holds = "plain containers and numpy arrays"  # what the file should hold, for the refusal message

    def find_class(self, module: str, name: str) -> Any:
        try:
            return NUMPY_GLOBALS[(module, name)]
        except KeyError:
            raise RefusedGlobal(f"refusing {module}.{name}: {self.holds}") from None


def load_numpy_pickle(path: Path, *, unpickler: type[NumpyUnpickler] = NumpyUnpickler, encoding: str = "ASCII", damaged_hint: str = "") -> Any:
    """The object in ``path``; a refused global or a damaged file is one ``ResNetError`` line naming the file."""
    try:
        return unpickler(io.BytesIO(path.read_bytes()), encoding=encoding).load()
    except RefusedGlobal as exc:
        raise ResNetError(f"refusing to load {path}: {exc} (the file may have been tampered with)") from None
    except DAMAGED as exc:
        raise ResNetError(f"cannot read {path}: {type(exc).__name__}: {exc} (the file is damaged{damaged_hint})") from None
