"""TensorFlow checkpoints read with numpy alone: the V2 tensor bundle and the V1 single file.

Both formats are LevelDB-style tables (tensorflow/core/lib/io/table_format.txt): data blocks of
prefix-compressed key/value entries, an index block pointing at them, and a 48-byte footer ending
in a magic number. In a V2 bundle (``NAME.index`` + ``NAME.data-00000-of-00001``) each key is a
tensor name and each value a ``BundleEntryProto`` (dtype, shape, shard, offset, size, crc32c) that
locates the raw little-endian bytes in a data shard. In a V1 file (``tf.train.Saver`` with
``write_version=V1``) the values are ``SavedTensorSlices`` protos that carry the numbers
themselves, possibly split in slices. The protobuf messages are decoded by hand: a few varints
and length-delimited fields, no ``protobuf`` package needed.

Every table block and every bundle tensor is checked against the CRC32C stored with it, so a
damaged file is refused rather than read as wrong weights.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from resnet.convert.crc32c import crc32c, unmask
from resnet.errors import ResNetError

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48
BLOCK_TRAILER_SIZE = 5  # compression type (1 byte) + masked crc32c (4 bytes)

# tensorflow/core/framework/types.proto: DataType -> numpy dtype (the numeric ones a ResNet needs).
DTYPES = {1: "<f4", 2: "<f8", 3: "<i4", 4: "u1", 5: "<i2", 6: "i1", 9: "<i8", 10: "?", 17: "<u2", 19: "<f2", 22: "<u4", 23: "<u8"}
# V1 files keep values in a TensorProto's typed repeated field: DataType -> (field number, packed
# element dtype, or None for varints). float_val 5, double_val 6, int_val 7, int64_val 10.
V1_FIELDS: dict[int, tuple[int, str | None]] = {1: (5, "<f4"), 2: (6, "<f8"), 3: (7, None), 9: (10, None)}

Field = tuple[int, int, int | bytes]


class CorruptCheckpoint(ValueError):
    """The bytes do not follow the format: raised deep in the parser, reported once with the file name."""


# --- protobuf wire format ---------------------------------------------------------------------


def varint(buf: bytes, pos: int) -> tuple[int, int]:
    """The base-128 varint at ``pos`` and the position after it."""
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise CorruptCheckpoint("a varint runs past its buffer")
        byte = buf[pos]
        result |= (byte & 0x7F) << shift
        pos += 1
        if byte < 0x80:
            return result, pos
        shift += 7


def fields(buf: bytes) -> Iterator[Field]:
    """(field number, wire type, value) of each field of one protobuf message, in order."""
    pos = 0
    while pos < len(buf):
        tag, pos = varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = varint(buf, pos)
        elif wire == 1:
            value, pos = int.from_bytes(buf[pos : pos + 8], "little"), pos + 8
        elif wire == 2:
            length, pos = varint(buf, pos)
            value, pos = buf[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = int.from_bytes(buf[pos : pos + 4], "little"), pos + 4
        else:
            raise CorruptCheckpoint(f"protobuf wire type {wire} is not used by checkpoints")
        if pos > len(buf):
            raise CorruptCheckpoint("a protobuf field runs past its message")
        yield number, wire, value


def message(buf: bytes) -> dict[int, list[int | bytes]]:
    """Field number -> every value it had (repeated fields keep their order)."""
    out: dict[int, list[int | bytes]] = {}
    for number, _, value in fields(buf):
        out.setdefault(number, []).append(value)
    return out


def shape_of(buf: bytes) -> tuple[int, ...]:
    """A TensorShapeProto: repeated Dim (field 2) whose size is field 1."""
    return tuple(int(message(dim).get(1, [0])[0]) for dim in message(buf).get(2, []))


# --- the table (SSTable) format -----------------------------------------------------------------


def _block(data: bytes, handle: bytes) -> bytes:
    offset, pos = varint(handle, 0)
    size, _ = varint(handle, pos)
    end = offset + size
    if end + BLOCK_TRAILER_SIZE > len(data):
        raise CorruptCheckpoint(f"a block at byte {offset} runs past the end of the file (truncated?)")
    stored = unmask(int.from_bytes(data[end + 1 : end + 5], "little"))
    if crc32c(data[offset : end + 1]) != stored:  # the checksum covers the compression-type byte too
        raise CorruptCheckpoint(f"the block at byte {offset} fails its checksum")
    if data[end] == 1:
        return snappy_decompress(data[offset:end])
    if data[end] != 0:
        raise CorruptCheckpoint(f"the block at byte {offset} has unknown compression type {data[end]}")
    return data[offset:end]


def snappy_decompress(buf: bytes) -> bytes:
    """Raw Snappy (the table format's one compression; TF writes checkpoints uncompressed, older
    tools may not): a varint length, then literals and back-references of 1-, 2- or 4-byte offsets."""
    size, pos = varint(buf, 0)
    out = bytearray()
    while pos < len(buf):
        tag, kind = buf[pos], buf[pos] & 3
        pos += 1
        if kind == 0:  # literal; lengths >= 61 follow in 1-4 bytes
            length = tag >> 2
            if length >= 60:
                extra = length - 59
                length = int.from_bytes(buf[pos : pos + extra], "little")
                pos += extra
            length += 1
            out += buf[pos : pos + length]
            pos += length
            continue
        if kind == 1:
            length, offset = 4 + ((tag >> 2) & 7), ((tag >> 5) << 8) | buf[pos]
            pos += 1
        else:
            width = 2 if kind == 2 else 4
            length, offset = (tag >> 2) + 1, int.from_bytes(buf[pos : pos + width], "little")
            pos += width
        if not 0 < offset <= len(out):
            raise CorruptCheckpoint("a compressed block refers back past its start")
        start = len(out) - offset
        # A copy longer than its offset overlaps what it writes: it repeats the last `offset` bytes.
        out += (out[start:] * (length // offset + 1))[:length] if offset < length else out[start : start + length]
    if len(out) != size or pos != len(buf):
        raise CorruptCheckpoint("a compressed block does not decompress to its stated size")
    return bytes(out)


def _entries(block: bytes) -> Iterator[tuple[bytes, bytes]]:
    """Key/value pairs of one block; keys share prefixes with their predecessor."""
    if len(block) < 4:
        raise CorruptCheckpoint("a table block is too short")
    num_restarts = int.from_bytes(block[-4:], "little")
    limit = len(block) - 4 - 4 * num_restarts
    if limit < 0:
        raise CorruptCheckpoint("a table block's restart array is damaged")
    pos, key = 0, b""
    while pos < limit:
        shared, pos = varint(block, pos)
        non_shared, pos = varint(block, pos)
        value_len, pos = varint(block, pos)
        if shared > len(key) or pos + non_shared + value_len > limit:
            raise CorruptCheckpoint("a table entry runs past its block")
        key = key[:shared] + block[pos : pos + non_shared]
        pos += non_shared
        yield key, block[pos : pos + value_len]
        pos += value_len


def read_table(data: bytes) -> dict[bytes, bytes]:
    """Every key/value pair of a table file held in ``data``."""
    if len(data) < FOOTER_SIZE or int.from_bytes(data[-8:], "little") != TABLE_MAGIC:
        raise CorruptCheckpoint("it does not end in the table magic number (not a TF checkpoint, or truncated)")
    footer = data[-FOOTER_SIZE:]
    _, pos = varint(footer, 0)  # metaindex handle: offset
    _, pos = varint(footer, pos)  # metaindex handle: size
    index = _block(data, footer[pos:])
    table: dict[bytes, bytes] = {}
    for _, handle in _entries(index):
        table.update(_entries(_block(data, handle)))
    return table


def is_table(path: Path) -> bool:
    """Whether the file ends in the table magic number: cheap, reads 8 bytes."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            if fh.tell() < FOOTER_SIZE:
                return False
            fh.seek(-8, os.SEEK_END)
            return int.from_bytes(fh.read(8), "little") == TABLE_MAGIC
    except OSError:
        return False


# --- checkpoints --------------------------------------------------------------------------------


def _array(raw: bytes, dtype_enum: int, shape: tuple[int, ...], name: str) -> np.ndarray:
    dtype = np.dtype(DTYPES[dtype_enum])
    count = int(np.prod(shape))
    if len(raw) != count * dtype.itemsize:
        raise CorruptCheckpoint(f"tensor {name!r} has {len(raw)} bytes for shape {list(shape)}")
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()


def _read_bundle(index_path: Path, data: bytes) -> dict[str, np.ndarray]:
    table = read_table(data)
    header = message(table.pop(b"", b""))
    if int(header.get(2, [0])[0]) != 0:
        raise CorruptCheckpoint("it was written big-endian; only little-endian bundles are read")
    num_shards = int(header.get(1, [1])[0])
    prefix = str(index_path)[: -len(".index")]
    shards: dict[int, bytes] = {}
    tensors: dict[str, np.ndarray] = {}
    for key, value in table.items():
        name = key.decode("utf-8", "replace")
        entry = message(value)
        if 7 in entry:
            raise CorruptCheckpoint(f"tensor {name!r} is partitioned; partitioned variables are not supported")
        dtype_enum = int(entry.get(1, [0])[0])
        if dtype_enum not in DTYPES:
            continue  # strings, resources: nothing a ResNet's weights are made of
        shard = int(entry.get(3, [0])[0])
        if shard not in shards:
            shard_path = Path(f"{prefix}.data-{shard:05d}-of-{num_shards:05d}")
            if not shard_path.is_file():
                raise ResNetError(f"cannot read {index_path}: its data file {shard_path} is missing")
            shards[shard] = shard_path.read_bytes()
        offset, size = int(entry.get(4, [0])[0]), int(entry.get(5, [0])[0])
        raw = shards[shard][offset : offset + size]
        if len(raw) != size:
            raise CorruptCheckpoint(f"tensor {name!r} lies past the end of data shard {shard} (truncated?)")
        if 6 in entry and crc32c(raw) != unmask(int(entry[6][0])):
            raise CorruptCheckpoint(f"tensor {name!r} fails its checksum in data shard {shard}")
        tensors[name] = _array(raw, dtype_enum, shape_of(entry.get(2, [b""])[0]), name)
    return tensors


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value  # negative ints are 10-byte varints


def _proto_values(tensor: dict[int, list[int | bytes]], dtype_enum: int) -> np.ndarray:
    """The numbers of a TensorProto: its packed bytes (tensor_content), or its typed repeated field."""
    dtype = np.dtype(DTYPES[dtype_enum])
    if 4 in tensor:
        return np.frombuffer(b"".join(tensor[4]), dtype=dtype)
    number, packed = V1_FIELDS[dtype_enum]
    values = tensor.get(number, [])
    if values and isinstance(values[0], bytes):  # packed encoding
        blob = b"".join(values)
        if packed is not None:
            return np.frombuffer(blob, dtype=packed).astype(dtype)
        ints, pos = [], 0
        while pos < len(blob):
            v, pos = varint(blob, pos)
            ints.append(_signed(v))
        return np.array(ints, dtype=dtype)
    if packed is not None:  # one fixed-width field per value: reinterpret the integer's bytes
        width = np.dtype(packed).itemsize
        return np.frombuffer(b"".join(int(v).to_bytes(width, "little") for v in values), dtype=packed).astype(dtype)
    return np.array([_signed(int(v)) for v in values], dtype=dtype)


def _slice_index(buf: bytes, shape: tuple[int, ...]) -> tuple[slice, ...]:
    """A TensorSliceProto as numpy indices: extents (start, length), a missing length means 'all'."""
    extents = message(buf).get(1, [])
    index = []
    for dim, extent in enumerate(extents):
        ext = message(extent)
        start = int(ext.get(1, [0])[0])
        index.append(slice(start, start + int(ext[2][0])) if 2 in ext else slice(0, shape[dim]))
    return tuple(index) + (slice(None),) * (len(shape) - len(index))


def _read_v1(data: bytes) -> dict[str, np.ndarray]:
    table = read_table(data)
    meta = message(table.pop(b"", b"")).get(1)
    if not meta:
        raise CorruptCheckpoint("it has no SavedTensorSliceMeta entry")
    tensors: dict[str, np.ndarray] = {}
    dtypes: dict[str, int] = {}
    for saved in message(meta[0]).get(1, []):
        fields_ = message(saved)
        name = fields_[1][0].decode("utf-8", "replace")
        dtype_enum = int(fields_.get(3, [0])[0])
        if dtype_enum in V1_FIELDS:  # strings and the like: nothing a ResNet's weights are made of
            tensors[name] = np.zeros(shape_of(fields_.get(2, [b""])[0]), dtype=DTYPES[dtype_enum])
            dtypes[name] = dtype_enum
    filled = dict.fromkeys(tensors, 0)
    for value in table.values():
        for slice_buf in message(value).get(2, []):
            saved_slice = message(slice_buf)
            name = saved_slice[1][0].decode("utf-8", "replace")
            if name not in tensors:
                continue
            target = tensors[name]
            index = _slice_index(saved_slice.get(2, [b""])[0], target.shape)
            values = _proto_values(message(saved_slice.get(3, [b""])[0]), dtypes[name])
            region = target[index]
            if values.size != region.size:
                raise CorruptCheckpoint(f"tensor {name!r} has a slice of {values.size} values for {region.size} places")
            target[index] = values.reshape(region.shape)
            filled[name] += values.size
    missing = [n for n, count in filled.items() if count < tensors[n].size]
    if missing:
        raise CorruptCheckpoint(f"tensor {missing[0]!r} has no (or not all of its) data")
    return tensors


def index_path(path: str | os.PathLike[str]) -> Path | None:
    """The ``.index`` file of a V2 bundle given as that file, a data shard or the prefix; else None."""
    path = Path(path)
    name = path.name
    if ".data-" in name:
        candidate = path.with_name(name[: name.rindex(".data-")] + ".index")
    elif name.endswith(".index"):
        candidate = path
    else:
        candidate = path.with_name(name + ".index")
    return candidate if candidate.is_file() else None


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Every numeric tensor of a TF checkpoint (V2 bundle or V1 file) by its variable name."""
    bundle = index_path(path)
    source = bundle or Path(path)
    if not source.is_file():
        raise ResNetError(f"checkpoint not found: {path} (give NAME.index, NAME.data-*, the NAME prefix, or a V1 file)")
    try:
        data = source.read_bytes()
        return _read_bundle(source, data) if bundle else _read_v1(data)
    except CorruptCheckpoint as exc:
        raise ResNetError(f"cannot read {source}: {exc}") from None
    except (IndexError, KeyError, ValueError, OSError, struct.error, UnicodeDecodeError, MemoryError) as exc:
        raise ResNetError(f"cannot read {source}: {type(exc).__name__}: {exc} (the checkpoint is damaged or truncated)") from None
