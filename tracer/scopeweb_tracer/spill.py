"""The shipper's spill file and the batch format its lines share with the ingest request.

A batch is sent as one request body, ``{"traces": [...]}``; a batch that cannot be sent is
appended to the spill file as that same body on one line (JSON Lines), so replaying a line
posts it unchanged. This module owns that format: `batch_body` writes it and `spilled_batch`
reads a line back.

Standard library only: this module runs inside the serving process.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
from pathlib import Path
from typing import IO

logger = logging.getLogger("scopeweb_tracer")


class SpillFile:
    """The JSON Lines file of batches that could not be sent: one request body a line.

    Appends are fsync'd, so a crash leaves at most one torn last line; the next append starts
    a fresh line after it, and replay skips it. Rewrites go through a temporary file and
    `os.replace`. One lock orders the caller's close and the worker.
    """

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._lock = threading.Lock()

    def append(self, line: bytes) -> bool:
        """Append ``line``; False when the file would pass max_bytes or cannot be written."""
        with self._lock:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.path, "a+b") as file:
                    size = file.seek(0, os.SEEK_END)
                    if size + len(line) > self.max_bytes:
                        return False
                    if size and not _ends_with_newline(file, size):
                        line = b"\n" + line
                    file.write(line)
                    file.flush()
                    os.fsync(file.fileno())
                return True
            except OSError:
                logger.exception("scopeweb_tracer: cannot write the spill file %s", self.path)
                return False

    def read_line(self, position: int) -> tuple[bytes, int] | None:
        """The line starting at byte ``position`` and the position after it; None at the end."""
        with self._lock:
            try:
                with open(self.path, "rb") as file:
                    file.seek(position)
                    line = file.readline()
            except FileNotFoundError:
                return None
        return (line, position + len(line)) if line else None

    def drop_prefix(self, position: int) -> None:
        """Remove the file's first ``position`` bytes (batches already replayed)."""
        if position <= 0:
            return
        with self._lock:
            temporary = self.path.with_name(self.path.name + ".tmp")
            try:
                with open(self.path, "rb") as source, open(temporary, "wb") as target:
                    source.seek(position)
                    shutil.copyfileobj(source, target)
                    target.flush()
                    os.fsync(target.fileno())
                os.replace(temporary, self.path)
            except OSError:
                logger.exception(
                    "scopeweb_tracer: cannot rewrite the spill file %s; "
                    "its replayed batches will be sent again",
                    self.path,
                )


def batch_body(lines: list[bytes]) -> bytes:
    """The request body (and spill line, less its newline) for items already JSON-encoded."""
    return b'{"traces":[' + b",".join(lines) + b"]}"


def spilled_batch(line: bytes) -> tuple[bytes, int] | None:
    """A spilled line's request body and item count; None for a torn or garbled line."""
    if not line.endswith(b"\n"):
        return None
    try:
        batch = json.loads(line)
    except ValueError:
        return None
    traces = batch.get("traces") if isinstance(batch, dict) else None
    if not isinstance(traces, list):
        return None
    return line.rstrip(b"\n"), len(traces)


def _ends_with_newline(file: IO[bytes], size: int) -> bool:
    file.seek(size - 1)
    return file.read(1) == b"\n"
