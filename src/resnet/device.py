"""What hardware we run on, and what it does natively: the basis for every precision/backend choice.

Nothing in the package hard-codes a precision or backend; it asks here. On x86 CPUs bf16 is fast
only with AVX512_BF16 (or AMX), int8 only with VNNI; elsewhere the same ops are emulated and can be
several times slower than fp32.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
from dataclasses import dataclass, field

import torch

# Flags worth printing beside a figure: they decide which precisions are native.
RELEVANT_FLAGS = (
    "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni",
    "avx512_bf16", "amx_bf16", "amx_int8", "amx_tile", "avx512_fp16",
)


@dataclass(frozen=True)
class CpuInfo:
    model: str
    vendor: str
    family: int | None
    flags: frozenset[str] = field(repr=False)
    capability: str  # torch's view: "AVX512", "AVX2", "DEFAULT", ...
    threads: int

    @property
    def native_bf16(self) -> bool:
        return bool({"avx512_bf16", "amx_bf16"} & self.flags)

    @property
    def native_int8(self) -> bool:
        return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & self.flags)

    @property
    def relevant_flags(self) -> list[str]:
        return [f for f in RELEVANT_FLAGS if f in self.flags]

    def describe(self) -> str:
        fam = f", family {self.family}" if self.family is not None else ""
        return (
            f"CPU: {self.model}{fam}; torch capability {self.capability}; {self.threads} threads; "
            f"flags: {' '.join(self.relevant_flags) or 'none of note'}; "
            f"native bf16: {'yes' if self.native_bf16 else 'no'}, native int8 (VNNI): {'yes' if self.native_int8 else 'no'}"
        )


@functools.cache
def cpu_info() -> CpuInfo:
    model, vendor, family, flags = platform.processor() or "unknown", "unknown", None, set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key == "model name" and model in ("unknown", platform.processor()):
                    model = value
                elif key == "vendor_id":
                    vendor = value
                elif key == "cpu family" and family is None:
                    family = int(value) if value.isdigit() else None
                elif key == "flags" and not flags:
                    flags = set(value.split())
                elif not line.strip() and flags:
                    break  # the first processor tells us all we need
    except OSError:
        pass
    return CpuInfo(
        model=model,
        vendor=vendor,
        family=family,
        flags=frozenset(flags),
        capability=torch.backends.cpu.get_cpu_capability(),
        threads=torch.get_num_threads(),
    )


def default_device() -> torch.device:
    """CUDA when present, else CPU (override with $RESNET_DEVICE)."""
    name = os.environ.get("RESNET_DEVICE")
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(name: str | torch.device | None) -> torch.device:
    if name is None or str(name) == "auto":
        return default_device()
    return torch.device(name)


def native_bf16(device: torch.device | str) -> bool:
    """Whether bf16 autocast is expected to be faster than fp32 on ``device``."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return cpu_info().native_bf16
    return False


def describe(device: torch.device | str | None = None) -> str:
    """One line naming the hardware, printed beside every figure."""
    device = resolve_device(device)
    if device.type == "cuda":
        idx = device.index if device.index is not None else torch.cuda.current_device()
        return f"GPU: {torch.cuda.get_device_name(idx)} (torch {torch.__version__}, CUDA {torch.version.cuda}); " + cpu_info().describe()
    return f"torch {torch.__version__}; " + cpu_info().describe()


def installed_version(package: str) -> str | None:
    """An installed package's version from its metadata (None if absent), without importing it: importing
    torchvision or an engine costs seconds at start."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None
