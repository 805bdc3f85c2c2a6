"""What an export changes in a bundle's files: a tokens file whose token ids would spell out
redacted text gets those ids replaced by ``MASKED_TOKEN_ID``; every other column, and every
other file, stays as stored."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq

MASKED_TOKEN_ID = -1


def token_ids(data: bytes) -> list[int]:
    """The ``token_id`` column of a chunk's tokens file."""
    ids: list[int] = pq.read_table(io.BytesIO(data), columns=["token_id"]).column(0).to_pylist()
    return ids


def mask_token_ids(data: bytes, rows: list[int]) -> bytes:
    """The tokens file ``data`` with the ``token_id`` of each of ``rows`` (chunk rows) set to
    ``MASKED_TOKEN_ID``."""
    table = pq.read_table(io.BytesIO(data))
    ids = table.column("token_id").to_pylist()
    for row in rows:
        ids[row] = MASKED_TOKEN_ID
    position = table.schema.get_field_index("token_id")
    table = table.set_column(position, "token_id", pa.array(ids, type=pa.int32()))
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()
