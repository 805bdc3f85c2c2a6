"""What the machine offers a run: the memory this process could still allocate, and the matmul
peaks workers measured (``traces.engine.peak``), kept in ``matmul-peaks.json`` under the data
directory. This module owns that file (reader and writer) so the torch-free web can read it."""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings

from traces.run_plan.plan import DTYPE_BYTES

PEAKS_FILE = "matmul-peaks.json"
PEAKS_FORMAT = 1


def memory_available(
    *,
    meminfo: Path = Path("/proc/meminfo"),
    self_cgroup: Path = Path("/proc/self/cgroup"),
    cgroup_root: Path = Path("/sys/fs/cgroup"),
) -> int | None:
    """Bytes this process could still allocate: MemAvailable from /proc/meminfo, capped by the
    room left under a cgroup's memory limit (v2 ``memory.max``, or v1's ``limit_in_bytes``;
    reclaimable page cache counts as room). None where neither can be read."""
    available: int | None = None
    with contextlib.suppress(OSError, ValueError):
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    for room in _cgroup_rooms(self_cgroup, cgroup_root):
        available = room if available is None else min(available, room)
    return available


def _cgroup_rooms(self_cgroup: Path, root: Path) -> Iterator[int]:
    """Limit minus non-reclaimable usage of each memory cgroup found with a limit set."""
    folders = [(root, "memory.max", "memory.current", "inactive_file")]
    with contextlib.suppress(OSError):
        for line in self_cgroup.read_text().splitlines():
            if line.startswith("0::/") and line.strip() != "0::/":
                folders.append((root / line[4:].strip(), *folders[0][1:]))
    v1 = root / "memory"
    folders.append((v1, "memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file"))
    for folder, limit_name, usage_name, cache_name in folders:
        try:
            limit = (folder / limit_name).read_text().strip()
            if limit == "max" or int(limit) >= 1 << 60:  # v1 writes "no limit" as ~2^63
                continue
            usage = int((folder / usage_name).read_text())
        except (OSError, ValueError):
            continue
        cache = 0
        with contextlib.suppress(OSError, ValueError):
            for line in (folder / "memory.stat").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == cache_name:
                    cache = int(value)
        yield max(0, int(limit) - max(0, usage - cache))


def peaks_path() -> Path:
    return Path(settings.DATA_DIR) / PEAKS_FILE


def _peaks_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("format") != PEAKS_FORMAT:
        return {}
    peaks = data.get("peaks")
    return peaks if isinstance(peaks, dict) else {}


def recorded_peaks(path: Path | None = None) -> dict[tuple[str, str], tuple[float, str]]:
    """``{(device_kind, dtype): (GFLOP/s, measured_at)}`` of the file's sound entries."""
    found: dict[tuple[str, str], tuple[float, str]] = {}
    for kind, entries in _peaks_json(path or peaks_path()).items():
        for dtype, entry in (entries if isinstance(entries, dict) else {}).items():
            gflops = entry.get("gflops") if isinstance(entry, dict) else None
            if isinstance(gflops, (int, float)) and math.isfinite(gflops) and gflops > 0:
                found[(kind, dtype)] = (float(gflops), str(entry.get("measured_at", "")))
    return found


def recorded_peak(device_kind: str, dtype: str, path: Path | None = None) -> float | None:
    """The matmul peak in GFLOP/s measured on ``device_kind`` (see
    ``traces.engine.runtime.device_kind``) in ``dtype``, or None."""
    entry = recorded_peaks(path).get((device_kind, dtype))
    return entry[0] if entry else None


def latest_recorded_peak(dtype: str, path: Path | None = None) -> tuple[str, float] | None:
    """The most recently measured peak in ``dtype`` on any device, with its device kind: what
    the web shows, since it does not know which worker will take the run."""
    found = [
        (at, kind, gflops) for (kind, d), (gflops, at) in recorded_peaks(path).items() if d == dtype
    ]
    if not found:
        return None
    _, kind, gflops = max(found)
    return kind, gflops


def store_peak(
    device_kind: str, dtype: str, gflops: float, *, n: int, path: Path | None = None
) -> None:
    """Add or replace one measurement. Writers take a lock, and the file is replaced whole
    (temp file + rename), so readers never see half of it."""
    if dtype not in DTYPE_BYTES or not math.isfinite(gflops) or gflops <= 0:
        raise ValueError(f"not a peak to record: {gflops!r} GFLOP/s in {dtype!r}")
    target = path or peaks_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_name(target.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        peaks = _peaks_json(target)
        if not isinstance(peaks.get(device_kind), dict):
            peaks[device_kind] = {}
        peaks[device_kind][dtype] = {
            "gflops": gflops,
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "n": n,
        }
        handle, temp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump({"format": PEAKS_FORMAT, "peaks": peaks}, out, indent=2, sort_keys=True)
            os.replace(temp, target)
        finally:
            if os.path.exists(temp):
                os.unlink(temp)
