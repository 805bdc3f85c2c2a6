"""The cost planner: FLOPs, memory and storage of a run from shapes alone, torch-free."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from safetensors.numpy import save_file

from tests.factories import make_prompt_set, make_sae
from traces.engine.model_files import default_model_files, hf_cache_folder
from traces.run_plan import (
    ModelShape,
    PlanError,
    RunPlan,
    SaeShape,
    latest_recorded_peak,
    mean_context,
    memory_available,
    model_shape_for,
    plan_run,
    recorded_peak,
    sae_shape_for,
    store_peak,
)
from traces.services.run_plans import run_plan_for

ROOT = Path(__file__).resolve().parents[2]
SLIDING, FULL = "sliding_attention", "full_attention"
# google/gemma-3-270m's config.json, the fields the planner reads.
GEMMA_270M: dict[str, Any] = {
    "architectures": ["Gemma3ForCausalLM"],
    "model_type": "gemma3_text",
    "hidden_size": 640,
    "intermediate_size": 2048,
    "num_attention_heads": 4,
    "num_key_value_heads": 1,
    "head_dim": 256,
    "num_hidden_layers": 18,
    "vocab_size": 262144,
    "sliding_window": 512,
    "layer_types": ([SLIDING] * 5 + [FULL]) * 3,
}
GEMMA = ModelShape.from_config(GEMMA_270M)


def resid(layer: int, d_sae: int = 16384) -> SaeShape:
    return SaeShape("resid_post", layer, 640, d_sae, 640, affine=False, dtype_bytes_on_disk=4)


def plan(saes: list[SaeShape], tokens: list[int], **options: Any) -> RunPlan:
    defaults: dict[str, Any] = {
        "dtype": "bfloat16",
        "top_k": 32,
        "peak_gflops": None,
        "memory_available": None,
    }
    return plan_run(GEMMA, saes, token_counts=tokens, **(defaults | options))


def test_270m_has_its_published_parameter_count() -> None:
    assert GEMMA.parameter_count() == 268_098_176
    assert GEMMA.layer_types[5] == FULL and GEMMA.window(5) is None and GEMMA.window(4) == 512


def test_flops_per_token_of_one_270m_layer_match_a_hand_count() -> None:
    # One prompt of 100 tokens, hooked after layer 0: the model's share is one layer.
    q = o = 2 * 640 * (4 * 256)
    k = v = 2 * 640 * (1 * 256)
    mlp = 3 * 2 * 640 * 2048
    context = 101 / 2  # token i sees i keys: (1 + … + 100) / 100
    attention = 2 * 2 * 4 * 256 * context  # QKᵀ and AV, every query head
    encode = 2 * 640 * 16384
    sparse_decode = 2 * 32 * 640

    result = plan([resid(0)], [100])

    assert result.model_flops_per_token == q + k + v + o + mlp + attention
    assert result.flops_per_token == q + k + v + o + mlp + attention + encode + sparse_decode
    assert result.total_flops == 100 * result.flops_per_token


def test_sliding_layers_attend_to_at_most_their_window() -> None:
    assert mean_context([1000], None) == 1001 / 2
    assert mean_context([1000], 512) == (512 * 513 / 2 + 488 * 512) / 1000
    assert mean_context([10, 30], 512) == (55 + 465) / 40


def test_a_deeper_hook_costs_more() -> None:
    tokens = [40, 700, 12]
    shallow, deep = plan([resid(3)], tokens), plan([resid(12)], tokens)
    assert deep.flops_per_token > shallow.flops_per_token
    both = plan([resid(3), resid(12)], tokens)
    assert both.model_flops_per_token == deep.model_flops_per_token
    assert both.flops_per_token == deep.flops_per_token + 2 * 640 * 16384 + 2 * 32 * 640


def test_a_transcoders_affine_skip_is_counted() -> None:
    plain = SaeShape("transcoder", 15, 640, 16384, 640, affine=False, dtype_bytes_on_disk=4)
    skip = SaeShape("transcoder", 15, 640, 16384, 640, affine=True, dtype_bytes_on_disk=4)
    assert plan([skip], [50]).flops_per_token - plan([plain], [50]).flops_per_token == (
        2 * 640 * 640
    )
    assert skip.parameter_count() - plain.parameter_count() == 640 * 640


def test_memory_that_would_not_fit_is_refused_with_the_shortfall() -> None:
    roomy = plan([resid(9, 262144)], [500] * 20, memory_available=64 * 10**9)
    assert roomy.refusal() is None
    need = roomy.peak_memory
    tight = plan([resid(9, 262144)], [500] * 20, memory_available=need - 1_300_000_000)
    refusal = tight.refusal() or ""
    assert refusal.startswith(f"This run needs about {need / 1e9:.1f} GB of memory at its peak")
    assert ", 1.3 GB more than the 0.6" in refusal and refusal.endswith("this worker has free.")


def test_peak_memory_holds_the_weights_a_batch_and_the_largest_encode() -> None:
    result = plan([resid(9, 262144), resid(3)], [100], dtype="float32")
    terms = {t.name: t.size for t in result.memory}
    assert terms["model weights"] == 268_098_176 * 4
    assert (
        terms["SAE weights"]
        == ((2 * 640 * 262144 + 2 * 262144 + 640) + (2 * 640 * 16384 + 2 * 16384 + 640)) * 4
    )
    assert terms["captured hooks"] == 100 * (640 + 640) * 4
    # The 262k SAE, in one block at 100 tokens: its input, target, reconstruction and error;
    # pre-activations and mask; the decoder rows of top_k latents per token, float32 and
    # weighted (the config gives no L0).
    work = 100 * (640 * 4 + 3 * 640 * 4)
    assert terms["encode"] == work + 100 * 262144 * (4 + 1) + 100 * 32 * 640 * 8
    assert 0 < terms["activations"] < terms["model weights"]
    assert result.peak_memory == sum(terms.values())


def _activations(result: RunPlan) -> str:
    return next(line for line in result.lines() if "activations:" in line)


def test_a_batch_is_bounded_by_its_tokens_its_rows_and_the_longest_prompt() -> None:
    assert "a batch of 6,400 tokens" in _activations(plan([resid(1)], [100] * 80))  # 64 rows
    assert "a batch of 8,192 tokens" in _activations(plan([resid(1)], [5000] + [100] * 80))
    assert "a batch of 9,000 tokens" in _activations(plan([resid(1)], [9000, 10]))  # alone


def test_a_reported_l0_sizes_the_sparse_decode() -> None:
    from traces.run_plan.plan import DECODE_ROWS

    dense = SaeShape("resid_post", 1, 640, 16384, 640, False, 4, l0=300.0)
    sparse = SaeShape("resid_post", 1, 640, 16384, 640, False, 4, l0=10.0)
    gap = plan([dense], [100]).peak_memory - plan([sparse], [100]).peak_memory
    # bfloat16 rows, then float32 twice; at most DECODE_ROWS entries at a time
    assert gap == (min(100 * 300, DECODE_ROWS) - 100 * 10) * 640 * (2 + 8)


def test_the_encode_block_width_is_the_engines() -> None:
    import torch

    from scopeweb_tracer import encode
    from scopeweb_tracer.sae import JumpReluSae
    from traces.run_plan import encode_block_width
    from traces.run_plan.plan import DECODE_ROWS, ENCODE_BLOCK_BYTES, ENCODE_MIN_BLOCK

    assert (ENCODE_BLOCK_BYTES, ENCODE_MIN_BLOCK, DECODE_ROWS) == (
        encode.BLOCK_BYTES,
        encode.MIN_BLOCK,
        encode.DECODE_ROWS,
    )
    for d_sae, tokens, dtype in [(262144, 8192, torch.bfloat16), (16384, 100, torch.float32)]:
        w = torch.zeros(1, d_sae, dtype=dtype)
        b = torch.zeros(d_sae, dtype=dtype)
        sae = JumpReluSae({"w_enc": w, "w_dec": w.T, "b_enc": b, "b_dec": b[:1], "threshold": b})
        size = torch.finfo(dtype).bits // 8
        assert encode_block_width(d_sae, tokens, size) == encode.block_width(sae, tokens)


def test_storage_is_a_token_row_and_top_k_latents_per_token_and_sae() -> None:
    result = plan([resid(3), resid(6)], [60, 40], top_k=32)
    # token_id 4, l0 2, recon_err 4, resid_norm 4, is_completion 1, redacted 1; each latent:
    # feature 4, row 4, value 2.
    assert result.storage_bytes == 2 * 100 * (16 + 32 * 10)


def test_feature_row_bytes_match_an_encoded_chunk() -> None:
    from traces.bundle.chunks import encode_chunk
    from traces.run_plan.plan import FEATURE_ROW_BYTES

    arrays: dict[str, np.ndarray] = {
        "token_ids": np.zeros(3, np.int32),
        "top_idx": np.array([[1, 2], [3, -1], [4, 5]], np.int32),
        "top_val": np.ones((3, 2), np.float16),
        "l0": np.zeros(3, np.int16),
        "recon_err": np.zeros(3, np.float32),
        "resid_norm": np.zeros(3, np.float32),
        "is_completion": np.zeros(3, np.uint8),
    }
    schema = pq.read_schema(io.BytesIO(encode_chunk(arrays)["features"]))
    assert sum(field.type.byte_width for field in schema) == FEATURE_ROW_BYTES


def test_lines_name_each_figure() -> None:
    result = plan([resid(9, 262144), resid(12)], [30] * 4, peak_gflops=400.0)
    text = "\n".join(result.lines())
    labels = ("resid_post L9 262k", "resid_post L12 16k")
    for words in ("FLOPs per token", *labels, "negligible", "Expected time", "GB"):
        assert words in text
    assert "unknown" in "\n".join(plan([resid(9)], [30]).lines())


def test_a_plan_refuses_a_layer_the_model_lacks_and_an_unknown_dtype() -> None:
    with pytest.raises(PlanError, match="has 18 layers"):
        plan([resid(18)], [10])
    with pytest.raises(PlanError, match="float16"):
        plan([resid(1)], [10], dtype="float16")


def test_multimodal_configs_keep_the_text_shape_under_text_config() -> None:
    shape = ModelShape.from_config({"model_type": "gemma3", "text_config": GEMMA_270M})
    assert shape == GEMMA
    with pytest.raises(PlanError, match="not a Gemma 3 config"):
        ModelShape.from_config({"hidden_size": 640})


def _sae_folder(folder: Path, config: dict[str, Any], tensors: dict[str, np.ndarray]) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config))
    save_file(tensors, str(folder / "params.safetensors"))
    return folder


def test_shapes_are_read_from_the_safetensors_header(tmp_path: Path) -> None:
    d_in, d_sae, d_out = 24, 40, 16
    transcoder = _sae_folder(
        tmp_path / "transcoder_all" / "layer_15_width_16k_l0_big_affine",
        {
            "architecture": "jump_relu",
            "hf_hook_point_in": "model.layers.15.pre_feedforward_layernorm.output",
            "hf_hook_point_out": "model.layers.15.post_feedforward_layernorm.output",
            "affine_connection": True,
            "type": "transcoder",
            "l0": 120,
        },
        {
            "w_enc": np.zeros((d_in, d_sae), np.float16),
            "w_dec": np.zeros((d_sae, d_out), np.float16),
            "b_enc": np.zeros(d_sae, np.float16),
            "b_dec": np.zeros(d_out, np.float16),
            "threshold": np.zeros(d_sae, np.float16),
            "affine_skip_connection": np.zeros((d_in, d_out), np.float16),
        },
    )
    attn = _sae_folder(
        tmp_path / "attn_out" / "layer_5_width_16k_l0_small",
        {"architecture": "jump_relu", "hf_hook_point_in": "model.layers.5.self_attn.o_proj.input"},
        {
            "w_enc": np.zeros((d_in, d_sae), np.float32),
            "w_dec": np.zeros((d_sae, d_in), np.float32),
        },
    )

    assert sae_shape_for(str(transcoder)) == SaeShape(
        "transcoder", 15, d_in, d_sae, d_out, affine=True, dtype_bytes_on_disk=2, l0=120.0
    )
    assert sae_shape_for(str(attn)) == SaeShape(
        "attn_out", 5, d_in, d_sae, d_in, affine=False, dtype_bytes_on_disk=4
    )


def test_a_damaged_or_missing_sae_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "sae"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"hf_hook_point_in": "model.layers.1.output"}))
    (folder / "params.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(PlanError, match="not a safetensors file"):
        sae_shape_for(str(folder))
    (folder / "config.json").write_text(
        json.dumps({"hf_hook_point_in": "model.layers.1.self_attn.q_proj.output"})
    )
    save_file(
        {"w_enc": np.zeros((2, 4)), "w_dec": np.zeros((4, 2))}, str(folder / "params.safetensors")
    )
    with pytest.raises(PlanError, match="not supported yet"):
        sae_shape_for(str(folder))
    with pytest.raises(PlanError, match="neither a folder nor an SAE"):
        sae_shape_for(str(tmp_path / "absent"))


def test_a_checkpoint_folder_gives_its_shape(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(GEMMA_270M))
    assert model_shape_for(str(tmp_path)) == GEMMA


def test_the_default_model_without_its_cache_says_so(settings: Any, tmp_path: Path) -> None:
    settings.MODEL_CACHE_DIR = tmp_path
    with pytest.raises(PlanError, match="not in its cache yet"):
        model_shape_for("gemma-3-270m")


def test_the_default_models_cached_config_is_the_published_one() -> None:
    folder = hf_cache_folder(default_model_files())
    if not (folder / "config.json").is_file():
        pytest.skip("the default model's cache is built by the first load (real-model tests)")
    assert model_shape_for("gemma-3-270m") == GEMMA


def _default_config(settings: Any, root: Path) -> None:
    """The default model's config.json where a worker's first load caches it, under ``root``."""
    settings.MODEL_CACHE_DIR = root
    folder = hf_cache_folder(default_model_files())
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(GEMMA_270M))


SHIPPED_SAE = "saes/scopeweb-gemma-3-270m-pt/resid_post/layer_12_width_4k_l0_medium"


@pytest.mark.django_db
def test_run_plan_for_a_prompt_set(settings: Any, tmp_path: Path) -> None:
    settings.DATA_DIR = tmp_path
    _default_config(settings, tmp_path / "models")
    prompt_set = make_prompt_set(prompts=["short", "also short", "long"])
    prompt_set.prompts.filter(position=2).update(token_count=5000)
    sae = make_sae(reference=SHIPPED_SAE, model_name="google/gemma-3-270m")
    limit = prompt_set.profile.capture_limit
    options: dict[str, Any] = {"prompt_set": prompt_set, "saes": [sae], "top_k": 16}

    # Each prompt: its tokens and the completion, at most the capture limit (the profile's).
    result = run_plan_for(**options, dtype="auto", capture_limit=None, generate_tokens=10)
    assert (result.prompts, result.tokens) == (3, 15 + 15 + limit)
    assert (result.dtype, result.deepest_layer, result.peak_gflops) == ("float32", 12, None)
    assert [cost.label for cost in result.saes] == ["resid_post L12 4k"]
    assert result.saes[0].encode_flops == 2 * 640 * 4096
    text = "\n".join(result.lines())
    assert "dtype auto: planned in float32, since no worker has measured" in text
    assert "unknown until a worker has measured" in text

    # The run's own limit; a recorded bfloat16 peak makes auto bfloat16 and times the run.
    store_peak("cpu:test", "bfloat16", 900.0, n=128)
    result = run_plan_for(**options, dtype="auto", capture_limit=64, generate_tokens=0)
    assert (result.tokens, result.dtype, result.peak_gflops) == (5 + 5 + 64, "bfloat16", 900.0)
    assert result.seconds is not None and result.as_dict()["notes"] == list(result.notes)
    assert "planned in bfloat16, since a worker has measured" in "\n".join(result.lines())
    assert "measured on cpu:test" in "\n".join(result.lines())
    explicit = run_plan_for(**options, dtype="float32", capture_limit=64, generate_tokens=0)
    assert (explicit.dtype, explicit.peak_gflops, explicit.notes) == ("float32", None, ())


@pytest.mark.django_db
def test_run_plan_for_a_model_without_its_config_says_so(settings: Any, tmp_path: Path) -> None:
    settings.MODEL_CACHE_DIR = tmp_path
    sae = make_sae(reference=SHIPPED_SAE, model_name="google/gemma-3-270m")
    with pytest.raises(PlanError, match=r"google/gemma-3-270m: .*not in its cache yet"):
        run_plan_for(
            prompt_set=make_prompt_set(),
            saes=[sae],
            dtype="auto",
            top_k=32,
            capture_limit=None,
            generate_tokens=0,
        )


def test_memory_available_is_capped_by_the_cgroup(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal: 64000000 kB\nMemAvailable: 32000000 kB\n")
    cgroup = tmp_path / "cgroup"
    (cgroup / "worker").mkdir(parents=True)
    (cgroup / "worker" / "memory.max").write_text("8000000000\n")
    (cgroup / "worker" / "memory.current").write_text("3000000000\n")
    (cgroup / "worker" / "memory.stat").write_text("anon 1\ninactive_file 1000000000\n")
    self_cgroup = tmp_path / "self"
    self_cgroup.write_text("0::/worker\n")

    def free(path: Path) -> int | None:
        return memory_available(meminfo=meminfo, self_cgroup=path, cgroup_root=cgroup)

    assert free(self_cgroup) == 8_000_000_000 - 2_000_000_000
    assert free(tmp_path / "none") == 32_000_000 * 1024
    here = memory_available()
    assert here is None or here > 0


def test_the_peak_recorder_round_trips(settings: Any, tmp_path: Path) -> None:
    import torch

    from traces.engine.peak import peak_for, record_peak

    settings.DATA_DIR = tmp_path
    (tmp_path / "matmul-peaks.json").write_text("{damaged")
    assert recorded_peak("cpu:test", "float32") is None
    measured = record_peak(torch.device("cpu"), "float32", "cpu:test", n=128)
    assert measured > 0
    assert recorded_peak("cpu:test", "float32") == measured
    assert peak_for(torch.device("cpu"), "float32", "cpu:test") == measured  # not re-measured
    assert recorded_peak("cpu:test", "bfloat16") is None
    assert latest_recorded_peak("float32") == ("cpu:test", measured)
    assert not list(tmp_path.glob(".tmp-*"))  # written through a temp file, renamed
