"""The cost of a run before it starts: FLOPs per token, peak memory, expected time and storage.

Torch-free, so the run form can show the plan and refuse a run whose memory would not fit. It
reads shapes only (``shapes``): a Gemma 3 ``config.json`` and each SAE's ``config.json`` and
safetensors header, never the weights; ``plan`` turns them into a ``RunPlan``. The matmul peak a
time estimate needs is measured by a worker (``traces.engine.peak``) and kept in
``matmul-peaks.json`` under the data directory, which ``machine`` owns (reader and writer) so
the web can read it. ``traces.services.run_plans.run_plan_for`` plans a prompt set's run.
"""

from traces.run_plan.machine import (
    latest_recorded_peak,
    memory_available,
    peaks_path,
    recorded_peak,
    recorded_peaks,
    store_peak,
)
from traces.run_plan.plan import (
    DTYPE_BYTES,
    EFFICIENCY,
    MemoryTerm,
    RunPlan,
    SaeCost,
    bundle_bytes_per_token,
    encode_block_width,
    plan_run,
)
from traces.run_plan.shapes import (
    ModelShape,
    PlanError,
    SaeShape,
    mean_context,
    model_shape_for,
    sae_shape_for,
    sae_shape_from_folder,
    safetensors_header,
)

__all__ = [
    "DTYPE_BYTES",
    "EFFICIENCY",
    "MemoryTerm",
    "ModelShape",
    "PlanError",
    "RunPlan",
    "SaeCost",
    "SaeShape",
    "bundle_bytes_per_token",
    "encode_block_width",
    "latest_recorded_peak",
    "mean_context",
    "memory_available",
    "model_shape_for",
    "peaks_path",
    "plan_run",
    "recorded_peak",
    "recorded_peaks",
    "sae_shape_for",
    "sae_shape_from_folder",
    "safetensors_header",
    "store_peak",
]
