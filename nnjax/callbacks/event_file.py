"""TensorBoard event files, written without TensorFlow (or tensorboard) installed.

An event file is a TFRecord stream of `tensorflow.Event` protocol buffers.
Scalars need only a handful of fields, so they are encoded here by hand:

    Event   { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
    Summary { repeated Value value = 1; }
    Value   { string tag = 1; float simple_value = 2; }

and each record is framed as TFRecord does: `uint64 length`, `uint32
masked_crc32c(length)`, the bytes, `uint32 masked_crc32c(bytes)`, all little-endian.
TensorBoard's own reader (`EventAccumulator`) parses the result; the tests check it.
"""

from __future__ import annotations

import os
import socket
import struct
import time


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), the checksum TFRecord uses."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # int64 as protobuf encodes it (two's complement for negatives)
    out = bytearray()
    while True:
        bits = value & 0x7F
        value >>= 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


def _key(field: int, wire_type: int) -> bytes:
    return _varint((field << 3) | wire_type)


def _length_delimited(field: int, payload: bytes) -> bytes:
    return _key(field, 2) + _varint(len(payload)) + payload


def encode_event(wall_time: float, step: int = 0, *, file_version: str | None = None, scalars: dict | None = None) -> bytes:
    """One serialized `Event` with a file version or scalar values."""
    out = _key(1, 1) + struct.pack("<d", wall_time) + _key(2, 0) + _varint(int(step))
    if file_version is not None:
        out += _length_delimited(3, file_version.encode())
    if scalars:
        values = b"".join(
            _length_delimited(1, _length_delimited(1, str(tag).encode()) + _key(2, 5) + struct.pack("<f", float(value)))
            for tag, value in scalars.items()
        )
        out += _length_delimited(5, values)
    return out


def _double(field: int, value: float) -> bytes:
    return _key(field, 1) + struct.pack("<d", float(value))


def encode_histogram(values, buckets: int = 30) -> bytes:
    """A `HistogramProto` of `values`: `buckets` equal-width buckets between their min and max (as
    `tf.summary.histogram`'s default), with `bucket_limit` the right edges:

        HistogramProto { double min = 1; double max = 2; double num = 3; double sum = 4;
                         double sum_squares = 5; repeated double bucket_limit = 6; repeated double bucket = 7; }
    """
    import numpy as np

    values = np.asarray(values, np.float64).reshape(-1)
    if values.size == 0:
        low = high = 0.0
        counts, edges = np.zeros(buckets), np.linspace(0.0, 1.0, buckets + 1)
    else:
        low, high = float(values.min()), float(values.max())
        counts, edges = np.histogram(values, bins=buckets, range=(low, high) if high > low else (low - 0.5, low + 0.5))
    packed_limits = b"".join(struct.pack("<d", float(e)) for e in edges[1:])
    packed_counts = b"".join(struct.pack("<d", float(c)) for c in counts)
    return (_double(1, low) + _double(2, high) + _double(3, values.size) + _double(4, values.sum())
            + _double(5, np.square(values).sum()) + _length_delimited(6, packed_limits) + _length_delimited(7, packed_counts))


def encode_png(image) -> bytes:
    """A grayscale 8-bit PNG of a 2-D uint8 array (zlib and CRC-32 from the standard library)."""
    import zlib

    import numpy as np

    image = np.asarray(image, np.uint8)
    height, width = image.shape
    raw = b"".join(b"\x00" + image[row].tobytes() for row in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def encode_summary_event(wall_time: float, step: int, values: list[bytes]) -> bytes:
    """An `Event` whose summary holds the given serialized `Summary.Value`s."""
    return _key(1, 1) + struct.pack("<d", wall_time) + _key(2, 0) + _varint(int(step)) + _length_delimited(
        5, b"".join(_length_delimited(1, v) for v in values))


def histogram_value(tag: str, values) -> bytes:
    """`Summary.Value { string tag = 1; HistogramProto histo = 5; }`."""
    return _length_delimited(1, tag.encode()) + _length_delimited(5, encode_histogram(values))


def image_value(tag: str, image) -> bytes:
    """`Summary.Value { string tag = 1; Image image = 4; }`, `Image { int32 height = 1; int32 width = 2;
    int32 colorspace = 3; bytes encoded_image_string = 4; }` (grayscale)."""
    height, width = image.shape
    body = _key(1, 0) + _varint(height) + _key(2, 0) + _varint(width) + _key(3, 0) + _varint(1)
    return _length_delimited(1, tag.encode()) + _length_delimited(4, body + _length_delimited(4, encode_png(image)))


def frame_record(data: bytes) -> bytes:
    """A TFRecord: length, its masked CRC, the data, its masked CRC."""
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", masked_crc32c(length)) + data + struct.pack("<I", masked_crc32c(data))


def new_file_name() -> str:
    """A fresh event file name, as TensorFlow's writer names them (time, host, pid, a counter)."""
    EventFileWriter._count += 1
    return f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}.{EventFileWriter._count}.v2"


def record_boundary(path: str, size: int) -> bool:
    """True if the first `size` bytes of the event file `path` are whole TFRecords (their length headers check out)."""
    offset = 0
    with open(path, "rb") as f:
        while offset < size:
            header = f.read(12)
            if len(header) < 12 or struct.unpack("<I", header[8:])[0] != masked_crc32c(header[:8]):
                return False
            offset += 12 + struct.unpack("<Q", header[:8])[0] + 4
            f.seek(offset)
    return offset == size


class EventFileWriter:
    """Appends scalar events to an `events.out.tfevents.*` file in `log_dir`.

    Args:
      log_dir: the folder (created if missing); TensorBoard shows one run per folder.
      file_name: the file's name (default: a new one from `new_file_name()`).
      keep_bytes: continue an existing file: keep its first `keep_bytes` bytes (whole records, as
        `size` reported them) and append after them; what follows is cut off. None (or 0) starts
        the file afresh.

    Raises:
      ValueError: if `keep_bytes` is given but the file is shorter or does not end a record there.
    """

    _count = 0

    def __init__(self, log_dir: str | os.PathLike, *, file_name: str | None = None, keep_bytes: int | None = None):
        self.log_dir = os.fspath(log_dir)
        os.makedirs(self.log_dir, exist_ok=True)
        self.path = os.path.join(self.log_dir, file_name or new_file_name())
        if keep_bytes:
            have = os.path.getsize(self.path) if os.path.isfile(self.path) else None
            if have is None or have < keep_bytes or not record_boundary(self.path, keep_bytes):
                found = "is missing" if have is None else f"has {have} bytes" + ("" if have < keep_bytes else " but no record ends there")
                raise ValueError(f"EventFileWriter: {self.path} {found}; expected at least {keep_bytes} bytes of whole records to continue")
            self._file = open(self.path, "r+b")  # noqa: SIM115 - closed by close()
            self._file.truncate(keep_bytes)
            self._file.seek(keep_bytes)
            return
        self._file = open(self.path, "wb")  # noqa: SIM115 - closed by close()
        self._file.write(frame_record(encode_event(time.time(), 0, file_version="brain.Event:2")))
        self._file.flush()

    def size(self) -> int:
        """The bytes written so far, flushed to the file (a position `keep_bytes` can resume from)."""
        self.flush()
        return os.path.getsize(self.path)

    def add_scalars(self, scalars: dict, step: int) -> None:
        """Writes `{tag: value}` at `step` (values are stored as float32)."""
        if self._file is None:
            raise ValueError(f"EventFileWriter: {self.path} is closed")
        if scalars:
            self._file.write(frame_record(encode_event(time.time(), step, scalars=scalars)))

    def add_values(self, values: list[bytes], step: int) -> None:
        """Writes serialized `Summary.Value`s (`histogram_value`, `image_value`, or a tensorboard
        `Summary.Value` proto's bytes) at `step`."""
        if self._file is None:
            raise ValueError(f"EventFileWriter: {self.path} is closed")
        if values:
            self._file.write(frame_record(encode_summary_event(time.time(), step, values)))

    def add_summary(self, summary: bytes, step: int) -> None:
        """Writes a serialized `Summary` proto (e.g. tensorboard's hparams summary) at `step`."""
        if self._file is None:
            raise ValueError(f"EventFileWriter: {self.path} is closed")
        event = _key(1, 1) + struct.pack("<d", time.time()) + _key(2, 0) + _varint(int(step)) + _length_delimited(5, summary)
        self._file.write(frame_record(event))

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


__all__ = ["EventFileWriter", "crc32c", "encode_event", "encode_histogram", "encode_png", "histogram_value", "image_value", "frame_record", "masked_crc32c", "new_file_name", "record_boundary"]
