"""The zip an export is written to, remembering each member's sha256 and size for the export's
manifest, and the reading of stored files that refuses what is gone."""

from __future__ import annotations

import json
import zipfile
from typing import IO, Any

from django.utils import timezone

from scopeweb.storage import bytes_sha256, hashed_copy, open_stored, read_bytes


class ExportBuildError(Exception):
    """The export cannot be built; the message says why (it fails the export's job)."""


class ZipWriter:
    """A zip being written, remembering each member's sha256 and size for the manifest."""

    def __init__(self, handle: IO[bytes]) -> None:
        self.zip = zipfile.ZipFile(handle, "w", allowZip64=True)
        self.files: list[dict[str, Any]] = []
        self._when = timezone.now().timetuple()[:6]

    def _info(self, name: str, compress: bool) -> zipfile.ZipInfo:
        info = zipfile.ZipInfo(name, date_time=self._when)
        # Parquet and PDF are compressed already; JSON is not.
        info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
        return info

    def add_bytes(self, name: str, data: bytes, *, compress: bool = True, **extra: Any) -> None:
        self.zip.writestr(self._info(name, compress), data)
        self.files.append({"name": name, "sha256": bytes_sha256(data), "bytes": len(data)} | extra)

    def add_json(self, name: str, value: Any) -> None:
        data = (json.dumps(value, indent=2, sort_keys=True, default=str) + "\n").encode()
        self.add_bytes(name, data)

    def add_stored(self, name: str, artifact: str, *, expected_sha256: str = "") -> None:
        """Copy a stored artifact in blocks; refuse it when it no longer matches its record."""
        try:
            with (
                open_stored(artifact) as source,
                self.zip.open(self._info(name, False), "w", force_zip64=True) as target,
            ):
                copied = hashed_copy(source, target)
        except OSError as exc:
            raise ExportBuildError(f"The stored file {artifact} cannot be read ({exc}).") from exc
        if expected_sha256 and copied.sha256 != expected_sha256:
            raise ExportBuildError(
                f"The stored file {artifact} no longer matches its recorded sha256 "
                f"(now {copied.sha256}, recorded {expected_sha256}); it is not exported."
            )
        self.files.append({"name": name, "sha256": copied.sha256, "bytes": copied.size})

    def close(self) -> None:
        self.zip.close()


def read_artifact(artifact: str) -> bytes:
    try:
        return read_bytes(artifact)
    except OSError as exc:
        raise ExportBuildError(f"The stored file {artifact} cannot be read ({exc}).") from exc


def username_of(user: Any) -> str | None:
    return getattr(user, "username", None) if user is not None else None
