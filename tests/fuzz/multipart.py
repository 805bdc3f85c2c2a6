"""Multipart bodies written byte by byte, as a client that is not the test client may send them:
fields and file names in any bytes (invalid UTF-8, quotes, line breaks), which the test client
would refuse to encode."""

from __future__ import annotations

import uuid

Part = str | bytes


def _bytes(value: Part) -> bytes:
    return value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value


def multipart(fields: dict[str, Part], files: dict[str, tuple[Part, bytes]]) -> tuple[bytes, str]:
    """The body and its Content-Type for ``fields`` and ``files`` ({field: (name, data)})."""
    boundary = uuid.uuid4().hex
    dash = f"--{boundary}".encode()
    chunks: list[bytes] = []
    for name, value in fields.items():
        chunks += [
            dash,
            f'Content-Disposition: form-data; name="{name}"'.encode(),
            b"",
            _bytes(value),
        ]
    for name, (filename, data) in files.items():
        chunks += [
            dash,
            f'Content-Disposition: form-data; name="{name}"; filename="'.encode()
            + _bytes(filename)
            + b'"',
            b"Content-Type: application/octet-stream",
            b"",
            data,
        ]
    chunks += [dash + b"--", b""]
    return b"\r\n".join(chunks), f"multipart/form-data; boundary={boundary}"
