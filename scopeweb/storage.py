"""Stored files: the one module that talks to Django's storage API (a local folder or an
S3-compatible bucket alike) and that hashes files.

- ``store`` saves under exactly the name given, replacing what is there (artifacts whose names
  a manifest or a row records); ``store_new`` saves under a fresh name (uploads); ``publish``
  moves a file stored under a temporary name to its own (written first, published once a
  database commit vouches for it).
- ``read_bytes``, ``open_stored``, ``exists``, ``stored_size``, ``stored_digest``: reading.
- ``delete_file``, ``storage_files``, ``remove_empty_folder``: what the purge uses.
- ``file_sha256`` / ``path_sha256``: the sha256 of an open file or a local path, in blocks
  (``hashlib.file_digest``), never the whole file in memory.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol, cast

from django.core.files.base import ContentFile, File
from django.core.files.storage import Storage, default_storage


@dataclass(frozen=True)
class Digest:
    sha256: str
    size: int


class _ReadsInto(Protocol):
    """What ``hashlib.file_digest`` reads from: Django's ``File`` proxies both to its file."""

    def readinto(self, buffer: bytearray | memoryview, /) -> int: ...
    def readable(self) -> bool: ...


def file_sha256(handle: IO[bytes]) -> str:
    """The sha256 of what is left to read in ``handle``."""
    return hashlib.file_digest(cast(_ReadsInto, handle), "sha256").hexdigest()


def path_sha256(path: Path) -> str:
    """The sha256 of a local file."""
    with path.open("rb") as handle:
        return file_sha256(handle)


def bytes_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def stored_digest(name: str) -> Digest:
    """The sha256 and size of a stored file, read in blocks. Raises ``OSError`` when it is gone."""
    with default_storage.open(name, "rb") as handle:
        sha256 = file_sha256(handle)
        return Digest(sha256, handle.tell())  # read to its end: the position is its size


def hashed_copy(source: IO[bytes], target: IO[bytes], block: int = 1 << 20) -> Digest:
    """Copy ``source`` into ``target`` in blocks, hashing on the way (one read of the data)."""
    digest = hashlib.sha256()
    size = 0
    for data in iter(lambda: source.read(block), b""):
        digest.update(data)
        size += len(data)
        target.write(data)
    return Digest(digest.hexdigest(), size)


def store(name: str, data: bytes | IO[bytes]) -> None:
    """Save ``data`` (bytes, or a file open for reading, streamed) under exactly ``name``,
    replacing what is there."""
    if default_storage.exists(name):
        default_storage.delete(name)
    base = name.rsplit("/", 1)[-1]
    content = ContentFile(data) if isinstance(data, bytes) else File(data, name=base)
    saved = default_storage.save(name, content)
    if saved != name:  # a storage that renamed instead of replacing would break the manifest
        raise RuntimeError(f"storage saved {name} as {saved}")


def publish(temp: str, name: str) -> None:
    """Move the stored file ``temp`` to ``name``, replacing what is there: a rename on local
    storage (atomic: a reader sees the old file or the new one), a copy then a delete on object
    stores, which have no rename (a reader may meet ``name`` missing for that moment, never
    half-written: an object appears whole)."""
    try:
        source, target = default_storage.path(temp), default_storage.path(name)
    except NotImplementedError:
        with default_storage.open(temp, "rb") as handle:
            store(name, handle)
        delete_file(temp)
        return
    os.replace(source, target)


def store_new(name: str, data: bytes | IO[bytes]) -> str:
    """Save ``data`` under ``name`` or, when that is taken, a name the storage makes from it;
    returns the name it was saved under."""
    base = name.rsplit("/", 1)[-1]
    content = ContentFile(data) if isinstance(data, bytes) else File(data, name=base)
    return str(default_storage.save(name, content))


def read_bytes(name: str) -> bytes:
    """A stored file's content. Raises ``OSError`` (``FileNotFoundError``) when it is gone."""
    with default_storage.open(name, "rb") as handle:
        data: bytes = handle.read()
    return data


def open_stored(name: str) -> IO[bytes]:
    """A stored file open for reading, for the caller to stream and close."""
    handle: IO[bytes] = default_storage.open(name, "rb")
    return handle


def exists(name: str) -> bool:
    return bool(name) and bool(default_storage.exists(name))


def stored_size(name: str, storage: Storage | None = None) -> int:
    """The file's size in bytes, 0 when it is gone."""
    storage = storage or default_storage
    try:
        return int(storage.size(name))
    except (FileNotFoundError, OSError):
        return 0


def stored_stamp(name: str) -> tuple[str, int, float] | None:
    """Where a file is (its full local path, else its name), its size and modification time:
    what tells a cache that the file changed. None when the storage cannot tell."""
    try:
        modified = default_storage.get_modified_time(name)
        size = int(default_storage.size(name))
    except (OSError, NotImplementedError):
        return None
    try:
        where = str(default_storage.path(name))
    except NotImplementedError:  # object stores have no local path
        where = name
    return where, size, modified.timestamp()


def storage_files(prefix: str, storage: Storage | None = None) -> list[str]:
    """Every file name under the folder ``prefix``, at any depth; none when it does not exist."""
    storage = storage or default_storage
    try:
        folders, files = storage.listdir(prefix)
    except (FileNotFoundError, NotADirectoryError):
        return []
    names = [f"{prefix}/{name}" for name in files]
    for folder in folders:
        names.extend(storage_files(f"{prefix}/{folder}", storage))
    return sorted(names)


def delete_file(name: str, storage: Storage | None = None) -> None:
    """Delete one file; one already gone counts as deleted (a rerun after an interruption)."""
    storage = storage or default_storage
    with contextlib.suppress(FileNotFoundError):
        storage.delete(name)


def remove_empty_folder(prefix: str, storage: Storage | None = None) -> None:
    """Local storage keeps empty folders; object stores have none to remove."""
    storage = storage or default_storage
    try:
        path = storage.path(prefix)
    except NotImplementedError:
        return
    for folder, _subfolders, _files in sorted(os.walk(path), reverse=True):
        with contextlib.suppress(OSError):
            os.rmdir(folder)
