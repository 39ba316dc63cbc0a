"""Read the records of a W&B offline run (its ``run-ID.wandb`` file) back, as ``wandb sync`` would.

wandb 0.31 has no Python reader of these files (``wandb sync`` and ``wandb leet`` are its Go
``wandb-core``): this reads the container — a 7-byte header (``:W&B``, magic 0xBEE1, version 0),
then LevelDB log blocks of 32 KiB whose chunks carry a CRC-32 (IEEE, seeded with the chunk type)
— and decodes each record with wandb's own protobuf schema, ``wandb_internal_pb2.Record``.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from wandb.proto import wandb_internal_pb2

BLOCK, HEADER = 32768, 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> list[wandb_internal_pb2.Record]:
    data = path.read_bytes()
    ident, magic, version = struct.unpack("<4sHB", data[:HEADER])
    assert (ident, magic, version) == (b":W&B", 0xBEE1, 0), (ident, magic, version)
    out, pending, at = [], b"", HEADER
    while at + HEADER <= len(data):
        room = BLOCK - at % BLOCK
        if room < HEADER:  # a block's tail too short for a chunk header is padding
            at += room
            continue
        checksum, length, kind = struct.unpack("<IHB", data[at:at + HEADER])
        if kind == 0 and length == 0:  # zero padding to the end of a block
            at += room
            continue
        chunk = data[at + HEADER:at + HEADER + length]
        assert zlib.crc32(chunk, zlib.crc32(bytes([kind]))) & 0xFFFFFFFF == checksum, f"bad checksum at byte {at}"
        at += HEADER + length
        pending = chunk if kind in (FULL, FIRST) else pending + chunk
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            out.append(record)
    return out
