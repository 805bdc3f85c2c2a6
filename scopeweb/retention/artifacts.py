"""Stored files as the purge and the storage page see them, through default storage (local
folder or S3-compatible bucket alike)."""

from __future__ import annotations

import contextlib
import os

from django.core.files.storage import Storage, default_storage


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


def stored_size(name: str, storage: Storage | None = None) -> int:
    """The file's size in bytes, 0 when it is gone."""
    storage = storage or default_storage
    try:
        return int(storage.size(name))
    except (FileNotFoundError, OSError):
        return 0


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
