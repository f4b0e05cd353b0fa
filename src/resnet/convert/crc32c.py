"""CRC32C (Castagnoli), the checksum TensorFlow and LevelDB store, computed with numpy.

Large buffers are cut into 2^k equal lanes whose CRC registers advance together, eight bytes per
numpy step (slicing-by-8); the lanes are then joined pairwise. Joining works because the register
update is linear over GF(2): the register after ``A + B`` is the register after ``A`` carried
through ``len(B)`` zero bytes, xor the register after ``B`` started from zero. Carrying a register
through n zero bytes is a fixed 32x32 bit matrix, built by squaring. About 100x faster than a
byte loop in Python, so a full ResNet-50 checkpoint is verified in well under a second.
"""

from __future__ import annotations

import functools

import numpy as np

POLY = 0x82F63B78  # reflected Castagnoli polynomial
MAX_LANES = 4096
SERIAL_BELOW = 1 << 14  # bytes; shorter buffers are not worth the lanes


@functools.cache
def tables() -> np.ndarray:
    """Slicing-by-8 tables: row k maps a byte to its CRC contribution k bytes further on."""
    out = np.zeros((8, 256), dtype=np.uint32)
    for n in range(256):
        crc = n
        for _ in range(8):
            crc = (crc >> 1) ^ (POLY if crc & 1 else 0)
        out[0, n] = crc
    for k in range(1, 8):
        out[k] = (out[k - 1] >> 8) ^ out[0][out[k - 1] & 0xFF]
    return out


def _advance_words(reg: np.ndarray, words: np.ndarray) -> np.ndarray:
    """Registers (one per lane) after each lane's column of little-endian 8-byte words."""
    t = tables()
    for j in range(words.shape[1]):
        w = words[:, j]
        low = (w & 0xFFFFFFFF).astype(np.uint32) ^ reg
        high = (w >> 32).astype(np.uint32)
        reg = (
            t[7][low & 0xFF] ^ t[6][(low >> 8) & 0xFF] ^ t[5][(low >> 16) & 0xFF] ^ t[4][low >> 24]
            ^ t[3][high & 0xFF] ^ t[2][(high >> 8) & 0xFF] ^ t[1][(high >> 16) & 0xFF] ^ t[0][high >> 24]
        )  # fmt: skip
    return reg


def _advance_bytes(reg: int, data: bytes) -> int:
    t0 = tables()[0]
    for byte in data:
        reg = int(t0[(reg ^ byte) & 0xFF]) ^ (reg >> 8)
    return reg


def _apply(columns: np.ndarray, regs: np.ndarray) -> np.ndarray:
    """A GF(2) 32x32 matrix (column b = image of bit b) applied to every register."""
    out = np.zeros_like(regs)
    for b in range(32):
        out ^= ((regs >> np.uint32(b)) & np.uint32(1)) * columns[b]
    return out


@functools.cache
def _zeros_operator(num_bytes: int) -> np.ndarray:
    """The matrix carrying a register through ``num_bytes`` zero bytes."""
    if num_bytes == 1:
        t0 = tables()[0]
        bits = np.uint32(1) << np.arange(32, dtype=np.uint32)
        return t0[bits & 0xFF] ^ (bits >> np.uint32(8))
    half = _zeros_operator(num_bytes // 2)
    square = _apply(half, half)
    return _apply(_zeros_operator(1), square) if num_bytes % 2 else square


def crc32c(data: bytes | memoryview) -> int:
    """The CRC32C of ``data``."""
    data = memoryview(data).cast("B")
    reg = 0xFFFFFFFF
    if len(data) >= SERIAL_BELOW:
        lanes = MAX_LANES
        while lanes > 1 and len(data) // lanes < 64:
            lanes //= 2
        lane_bytes = len(data) // lanes // 8 * 8
        body = lanes * lane_bytes
        words = np.frombuffer(data[:body], dtype="<u8").reshape(lanes, lane_bytes // 8)
        regs = np.zeros(lanes, dtype=np.uint32)
        regs[0] = reg
        regs = _advance_words(regs, words)
        span = lane_bytes
        while len(regs) > 1:  # join neighbours: left carried over the right's length, xor right
            regs = _apply(_zeros_operator(span), regs[0::2]) ^ regs[1::2]
            span *= 2
        reg, data = int(regs[0]), data[body:]
    return _advance_bytes(reg, data) ^ 0xFFFFFFFF


def unmask(masked: int) -> int:
    """LevelDB stores CRCs rotated and offset ("masked") so CRCs of CRCs stay distinct."""
    rot = (masked - 0xA282EAD8) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF
