"""The matmul peak of this worker's device, measured and kept for the cost planner.

The measurement is stored in ``matmul-peaks.json`` under the data directory by
``traces.run_plan.machine`` (which owns that file, so the torch-free web reads it), keyed by the
device kind of ``traces.engine.runtime.device_kind`` and the dtype.
"""

from __future__ import annotations

import time

import torch

from traces.run_plan import DTYPE_BYTES, memory_available, recorded_peak, store_peak

__all__ = [
    "device_memory_available",
    "measure_matmul_peak",
    "peak_for",
    "record_peak",
    "recorded_peak",
]


def measure_matmul_peak(
    dtype: torch.dtype, device: torch.device, n: int | None = None, reps: int = 3
) -> float:
    """Best GFLOP/s of an n×n matmul over ``reps`` runs (the first one warms up). n defaults to
    2048 on the CPU (about a second for all reps) and 8192 on CUDA, where smaller products
    measure the launch overhead rather than the peak."""
    n = n or (8192 if device.type == "cuda" else 2048)
    a = torch.randn(n, n, dtype=dtype, device=device)  # [n, n]
    b = torch.randn(n, n, dtype=dtype, device=device)
    best = 0.0
    with torch.inference_mode():
        for _ in range(reps):
            _sync(device)
            started = time.perf_counter()
            a @ b
            _sync(device)
            best = max(best, 2 * n**3 / (time.perf_counter() - started) / 1e9)
    return best


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def record_peak(device: torch.device, dtype: str, device_kind: str, n: int | None = None) -> float:
    """Measure the peak in ``dtype`` ("float32" or "bfloat16") and store it; GFLOP/s."""
    if dtype not in DTYPE_BYTES:
        raise ValueError(f"dtype {dtype!r} is not one of {', '.join(DTYPE_BYTES)}")
    n = n or (8192 if device.type == "cuda" else 2048)
    gflops = measure_matmul_peak(getattr(torch, dtype), device, n)
    store_peak(device_kind, dtype, gflops, n=n)
    return gflops


def peak_for(device: torch.device, dtype: str, device_kind: str) -> float:
    """The recorded peak, measured and recorded first when there is none."""
    return recorded_peak(device_kind, dtype) or record_peak(device, dtype, device_kind)


def device_memory_available(device: torch.device) -> int | None:
    """Free bytes where the run's tensors go: the GPU's free memory on CUDA, else the host's
    (``traces.run_plan.memory_available``)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    return memory_available()
