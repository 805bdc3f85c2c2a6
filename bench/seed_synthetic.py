"""Seed a PostgreSQL database with a large SYNTHETIC trace index, for the page benchmark
(``bench/pages.py``). Nothing it writes is real data, and it keeps apart from real data:

- it refuses to run unless ``DATABASE_URL`` is PostgreSQL and the database's name holds
  ``bench`` (``createdb -h 127.0.0.1 -U postgres scopeweb_bench``);
- its chunk files go to its own data directory (``SCOPEWEB_DATA_DIR``, default
  ``var/bench-data``);
- every record it makes says SYNTHETIC: the SAE ``synthetic-gemma-3-270m-width-16k``, the prompt
  set "SYNTHETIC benchmark data", the reviewer ``bench-reviewer``.

What it makes: 100,000 prompts; 4 runs of 25,000 traces (32 prompts per chunk, as runs store
them) with lognormal token counts capped at the 1000-token capture limit; about 100 index rows
(``TraceFeature``) per trace, 10M+ in all, with features drawn Zipf-like over width 16384; 300
feature annotations of which 8 are watched. Bulk rows go in with PostgreSQL binary COPY, the index
table with its secondary indexes and constraints dropped during the load and rebuilt after, then
ANALYZE.

Chunk files: only ``MATERIALIZED_CHUNKS`` chunks (5 per run, 32 traces of 1000 tokens each,
top-32) are written as real Parquet bundles through ``traces.bundle.chunks.write_chunk``; their
index rows are computed from those arrays, so index and files agree. The benchmark opens only these
traces as trace views, and the benchmark features (``bench_features`` in the state file) peak
highest in one trace of each of these chunks, so a feature page reads 20 distinct chunk files for
its 20 examples, as in a real run where strong examples are spread out. The other traces' chunk
files are not written (writing all 100k traces' arrays would take hours on a laptop and no
benchmarked page reads them).

Run (about 4 minutes on 2 cores)::

    createdb -h 127.0.0.1 -U postgres scopeweb_bench
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/scopeweb_bench \\
        .venv/bin/python bench/seed_synthetic.py --reset

It writes ``<data dir>/bench-state.json`` (ids, URLs to sample, the reviewer's password) for
``bench/pages.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import struct
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scopeweb.settings")
os.environ.setdefault("SCOPEWEB_DATA_DIR", str(ROOT / "var" / "bench-data"))
# The tokenizer is prepared once per machine; the bench data dir reuses the main one's.
os.environ.setdefault("SCOPEWEB_MODEL_CACHE_DIR", str(ROOT / "var" / "models"))

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

from scopeweb.accounts.actor import Actor  # noqa: E402
from scopeweb.accounts.roles import Role  # noqa: E402
from scopeweb.accounts.services import user_create  # noqa: E402
from scopeweb.jobs.models import Job, JobKind, JobState  # noqa: E402
from scopeweb.retention.models import RetentionProfile  # noqa: E402
from traces.bundle.chunks import write_chunk  # noqa: E402
from traces.bundle.format import canonicalize, trace_hash  # noqa: E402
from traces.models import (  # noqa: E402
    AnalysisRun,
    FeatureAnnotation,
    Prompt,
    PromptSet,
    SaeRecord,
    Trace,
    TraceFeature,
)

SAE_NAME = "synthetic-gemma-3-270m-width-16k"
PROMPT_SET_NAME = "SYNTHETIC benchmark data"
REVIEWER = "bench-reviewer"
WIDTH = 16384
TOP_K = 32
CHUNK_PROMPTS = 32
CAPTURE_LIMIT = 1000
RUNS = 4
TRACES_PER_RUN = 25_000
MATERIALIZED_PER_RUN = 5
VOCAB = 262_144
BOS_ID = 2
# Zipf ranks of the features whose pages are measured: from one that fires in nearly every
# trace to one that fires in a few hundred.
BENCH_RANKS = (0, 3, 10, 30, 100, 300, 1000, 3000, 8000, 15000)
WATCHED_RANKS = (40, 90, 150, 220, 330, 480, 700, 950)
PG_TYPES = {"bigint": ">i8", "integer": ">i4", "smallint": ">i2", "double precision": ">f8"}


def log(message: str, started: float) -> None:
    print(f"[{time.perf_counter() - started:7.1f} s] {message}", flush=True)


def check_database() -> str:
    db = settings.DATABASES["default"]
    if db["ENGINE"] != "django.db.backends.postgresql":
        sys.exit(
            "Refused: DATABASE_URL must point at PostgreSQL (the synthetic index is 10M rows)."
        )
    if "bench" not in str(db["NAME"]):
        sys.exit(
            f"Refused: the database {db['NAME']!r} has no 'bench' in its name; the synthetic "
            "data goes only into a database of its own (createdb scopeweb_bench)."
        )
    return str(db["NAME"])


def reset_schema() -> None:
    with connection.cursor() as cursor:
        cursor.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")


def zipf_features(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(feature index of each Zipf rank, cumulative probability by rank)."""
    ranks = np.arange(WIDTH, dtype=np.float64)
    weights = 1.0 / (ranks + 8.0) ** 1.05
    cdf = np.cumsum(weights / weights.sum())
    return rng.permutation(WIDTH).astype(np.int64), cdf


def trace_shapes(rng: np.random.Generator, materialized: set[int]) -> np.ndarray:
    """Tokens per trace of one run: lognormal around 250, BOS included, capped at the capture
    limit; every trace of a materialized chunk is 1000 tokens long."""
    tokens = np.clip(rng.lognormal(5.5, 0.8, TRACES_PER_RUN), 8, CAPTURE_LIMIT).astype(np.int64)
    for chunk in materialized:
        tokens[chunk * CHUNK_PROMPTS : (chunk + 1) * CHUNK_PROMPTS] = CAPTURE_LIMIT
    return tokens


def synthetic_index(
    rng: np.random.Generator, tokens: np.ndarray, by_rank: np.ndarray, cdf: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Index rows for traces with ``tokens``: (trace offset, feature, max, count, first), sorted
    by trace then feature; about 25 + tokens/4 distinct features per trace."""
    n = len(tokens)
    wanted = np.clip(np.round(25 + tokens / 4 + rng.normal(0, 8, n)), 8, 300).astype(np.int64)
    draws = int(wanted.max() * 1.5)
    picks = by_rank[np.searchsorted(cdf, rng.random((n, draws)))]
    picks.sort(axis=1)
    dup = np.zeros_like(picks, dtype=bool)
    dup[:, 1:] = picks[:, 1:] == picks[:, :-1]
    picks[dup] = WIDTH  # sentinel sorts last
    picks.sort(axis=1)
    keep = (np.arange(draws)[None, :] < wanted[:, None]) & (picks < WIDTH)
    trace_of = np.nonzero(keep)[0]
    feature = picks[keep]
    scale = np.exp(rng.normal(1.0, 0.5, WIDTH))  # per-feature activation scale, fixed seed
    peak = np.minimum(scale[feature] * rng.lognormal(0.0, 0.4, len(feature)), 15.0)
    length = tokens[trace_of]
    count = np.minimum(rng.geometric(0.08, len(feature)), length - 1)
    first = rng.integers(1, np.maximum(length - count, 2))
    return trace_of, feature, peak, count, first


def chunk_arrays(
    rng: np.random.Generator,
    by_rank: np.ndarray,
    cdf: np.ndarray,
    bench_features: list[int],
) -> tuple[dict[str, np.ndarray], list[int]]:
    """Dense arrays of one materialized chunk (32 traces × 1000 tokens): each token's top-32
    drawn from its trace's feature set; each benchmark feature put at one token of one trace
    with a peak above any synthetic index value, so its top examples are in these chunks."""
    traces, length = CHUNK_PROMPTS, CAPTURE_LIMIT
    n = traces * length
    idx = np.empty((n, TOP_K), dtype=np.int32)
    val = np.empty((n, TOP_K), dtype=np.float32)
    for t in range(traces):
        pool = np.unique(by_rank[np.searchsorted(cdf, rng.random(400))])
        keys = -np.log(rng.random((length, len(pool)))) * (1 + np.arange(len(pool)) / 20)
        chosen = np.argpartition(keys, TOP_K, axis=1)[:, :TOP_K]
        idx[t * length : (t + 1) * length] = pool[chosen]
        val[t * length : (t + 1) * length] = rng.lognormal(0.3, 0.6, (length, TOP_K)).clip(
            0.05, 15.0
        )
    for feature in bench_features:
        t = int(rng.integers(traces))
        row = t * length + int(rng.integers(1, length))
        if feature not in idx[row]:
            idx[row, -1] = feature
        val[row, idx[row] == feature] = float(rng.uniform(20, 60))
    starts = np.arange(traces) * length
    val[starts] = 50.0  # BOS: the outlier it is in real runs (the index leaves it out)
    ids = rng.zipf(1.3, n) % (VOCAB - 10) + 10
    ids[starts] = BOS_ID
    norms = rng.normal(120, 15, n).clip(40)
    arrays = {
        "token_ids": ids.astype(np.int32),
        "top_idx": idx,
        "top_val": val.astype(np.float16),
        "l0": rng.integers(30, 90, n).astype(np.int16),
        "recon_err": (rng.beta(2, 14, n) * norms**2).astype(np.float32),
        "resid_norm": norms.astype(np.float32),
        "is_completion": np.zeros(n, dtype=np.uint8),
    }
    canonicalize(arrays)
    return arrays, [int(s) for s in starts]


def index_from_arrays(
    arrays: dict[str, np.ndarray], start: int, stop: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(feature, max, count, first position) of one trace, BOS left out, as runs index."""
    idx = arrays["top_idx"][start + 1 : stop]
    val = arrays["top_val"][start + 1 : stop].astype(np.float64)
    pos = np.broadcast_to(np.arange(1, stop - start)[:, None], idx.shape)
    kept = idx >= 0
    features, inverse = np.unique(idx[kept], return_inverse=True)
    peak = np.zeros(len(features))
    np.maximum.at(peak, inverse, val[kept])
    first = np.full(len(features), stop - start)
    np.minimum.at(first, inverse, pos[kept])
    return features, peak, np.bincount(inverse), first


def _quoted(columns: list[str]) -> str:
    return ", ".join(f'"{column}"' for column in columns)


def binary_copy(table: str, columns: list[str], values: dict[str, np.ndarray]) -> None:
    """Load columns of equal length with PostgreSQL's binary COPY, built in numpy."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = %s",
            [table],
        )
        types = dict(cursor.fetchall())
    fields: list[tuple[str, str]] = [("n", ">i2")]
    for column in columns:
        fields += [(f"len_{column}", ">i4"), (column, PG_TYPES[types[column]])]
    rows = np.empty(len(values[columns[0]]), dtype=np.dtype(fields))
    rows["n"] = len(columns)
    for column in columns:
        rows[f"len_{column}"] = np.dtype(PG_TYPES[types[column]]).itemsize
        rows[column] = values[column]
    header = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
    statement = f"COPY {table} ({_quoted(columns)}) FROM STDIN (FORMAT BINARY)"
    with connection.connection.cursor() as cursor, cursor.copy(statement) as cp:  # psycopg 3
        cp.write(header)
        data = rows.tobytes()
        step = 64 << 20
        for at in range(0, len(data), step):
            cp.write(data[at : at + step])
        cp.write(struct.pack(">h", -1))


def text_copy(table: str, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
    statement = f"COPY {table} ({_quoted(columns)}) FROM STDIN"
    with connection.connection.cursor() as cursor, cursor.copy(statement) as cp:
        for row in rows:
            cp.write_row(row)


def set_sequence(table: str) -> None:
    with connection.cursor() as cursor:
        # ``table`` is a model's table name, never input.
        query = (
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT MAX(id) FROM {table}))"  # noqa: S608
        )
        cursor.execute(query)


def drop_index_extras(table: str) -> list[str]:
    """Drop ``table``'s constraints other than its primary key and its other indexes; returns
    the statements that put them back."""
    restore = []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = %s::regclass AND contype IN ('u', 'f')",
            [table],
        )
        constraints = cursor.fetchall()
        for name, definition in constraints:
            cursor.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
            restore.append(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s AND indexname <> %s",
            [table, f"{table}_pkey"],
        )
        for name, definition in cursor.fetchall():
            cursor.execute(f'DROP INDEX "{name}"')
            restore.append(definition)
    # Indexes first, then the constraints that can use them.
    return [s for s in restore if s.startswith("CREATE")] + [
        s for s in restore if not s.startswith("CREATE")
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reset", action="store_true", help="drop the bench database's schema")
    parser.add_argument("--seed", type=int, default=20240601)
    args = parser.parse_args()
    started = time.perf_counter()
    name = check_database()
    data_dir = Path(settings.DATA_DIR)
    log(f"database {name}, data dir {data_dir}", started)
    if args.reset:
        reset_schema()
        log("schema dropped", started)
    call_command("migrate", verbosity=0, interactive=False)
    log("migrated", started)
    if SaeRecord.objects.filter(name=SAE_NAME).exists():
        sys.exit("Synthetic data is already there; run again with --reset to start over.")

    rng = np.random.default_rng(args.seed)
    by_rank, cdf = zipf_features(rng)
    bench_features = [int(by_rank[r]) for r in BENCH_RANKS]
    profile = RetentionProfile.objects.order_by("code").first()
    assert profile is not None, "the retention profiles come with the migrations"

    sae = SaeRecord.objects.create(
        name=SAE_NAME,
        reference="synthetic://no-weights",
        model_name="google/gemma-3-270m",
        site="resid_post",
        layer=12,
        width=WIDTH,
        hook_point="blocks.12.hook_resid_post",
        params_sha256="0" * 64,
        description="SYNTHETIC: made by bench/seed_synthetic.py for the page benchmark.",
        quality={"l0": 60.0, "fvu": 0.12, "dead_share": 0.01},
    )
    reviewer, password = user_create(username=REVIEWER, role=Role.REVIEWER, actor=Actor.command())
    total = RUNS * TRACES_PER_RUN
    prompt_set = PromptSet.objects.create(
        name=PROMPT_SET_NAME,
        description="SYNTHETIC: generated text, for measuring page speed only.",
        profile=profile,
        created_by=reviewer,
        source_filename="synthetic.jsonl",
        source_format="jsonl",
        source_sha256="0" * 64,
        source_bytes=0,
        prompt_count=total,
        token_total=0,
        token_max=0,
        capture_limit=CAPTURE_LIMIT,
        over_limit_count=0,
        tokenizer="synthetic",
    )
    runs = []
    for r in range(RUNS):
        job = Job.objects.create(
            kind=JobKind.ANALYSIS,
            state=JobState.SUCCEEDED,
            created_by=reviewer,
            title=f"SYNTHETIC run {r + 1} of {RUNS}",
        )
        runs.append(
            AnalysisRun.objects.create(
                prompt_set=prompt_set,
                sae=sae,
                profile=profile,
                created_by=reviewer,
                job=job,
                top_k=TOP_K,
                capture_limit=CAPTURE_LIMIT,
                dtype="float32",
                chunk_prompts=CHUNK_PROMPTS,
                chunks_total=-(-TRACES_PER_RUN // CHUNK_PROMPTS),
                chunks_done=-(-TRACES_PER_RUN // CHUNK_PROMPTS),
                prompts_done=TRACES_PER_RUN,
                device_kind="synthetic",
            )
        )
    log(f"SAE {sae.name}, prompt set {prompt_set.pk}, runs {[run.pk for run in runs]}", started)

    # Annotations: 300 labelled features, 8 of them watched (safety tag and a threshold).
    tags = ["deception", "violence", "pii", "cyber", "jailbreak", "bias", "bio", "self-harm"]
    watched = {int(by_rank[rank]): tags[i] for i, rank in enumerate(WATCHED_RANKS)}
    labelled = set(watched) | {int(f) for f in rng.choice(WIDTH, 292, replace=False)}
    FeatureAnnotation.objects.bulk_create(
        FeatureAnnotation(
            sae=sae,
            index=index,
            label=f"SYNTHETIC feature {index}",
            description="Synthetic annotation for the page benchmark.",
            tags=[watched[index]] if index in watched else ["synthetic"],
            watch_threshold=6.0 if index in watched else None,
            updated_by=reviewer,
        )
        for index in sorted(labelled)
    )

    prompt_columns = [
        "id", "prompt_set_id", "position", "line", "external_id", "text", "text_sha256",
        "redactions", "messages", "tags", "metadata", "token_count", "over_capture_limit",
    ]  # fmt: skip
    trace_columns = [str(f.column) for f in Trace._meta.concrete_fields]
    feature_columns = [str(f.column) for f in TraceFeature._meta.concrete_fields]
    restore = drop_index_extras(TraceFeature._meta.db_table)
    log(f"dropped {len(restore)} index/constraint(s) of the index table for the load", started)

    next_prompt = next_trace = next_feature = 1
    token_total = token_max = over = 0
    views: list[int] = []
    materialized_chunks: list[dict[str, int]] = []
    filler = "SYNTHETIC prompt for the page benchmark. " * 4
    for r, run in enumerate(runs):
        chunks = -(-TRACES_PER_RUN // CHUNK_PROMPTS)
        material = sorted(
            int(c) for c in rng.choice(chunks - 1, MATERIALIZED_PER_RUN, replace=False)
        )
        tokens = trace_shapes(rng, set(material))
        prompt_ids = np.arange(next_prompt, next_prompt + TRACES_PER_RUN)
        trace_ids = np.arange(next_trace, next_trace + TRACES_PER_RUN)
        next_prompt += TRACES_PER_RUN
        next_trace += TRACES_PER_RUN
        # Prompts longer than the capture limit: 8 % of those at the limit.
        truncated = (tokens == CAPTURE_LIMIT) & (rng.random(TRACES_PER_RUN) < 0.08)
        prompt_tokens = np.where(truncated, rng.integers(1001, 3000, TRACES_PER_RUN), tokens)
        token_total += int(prompt_tokens.sum())
        token_max = max(token_max, int(prompt_tokens.max()))
        over += int(truncated.sum())
        text_copy(
            Prompt._meta.db_table,
            prompt_columns,
            [
                (
                    int(pid),
                    prompt_set.pk,
                    r * TRACES_PER_RUN + i,
                    r * TRACES_PER_RUN + i + 1,
                    f"syn-{r * TRACES_PER_RUN + i}",
                    f"{filler}#{r * TRACES_PER_RUN + i} topic {i % 97}",
                    "",
                    "{}",
                    "[]",  # messages: a text prompt
                    '["synthetic"]',
                    "{}",
                    int(prompt_tokens[i]),
                    bool(truncated[i]),
                )
                for i, pid in enumerate(prompt_ids)
            ],
        )
        chunk_of = np.arange(TRACES_PER_RUN) // CHUNK_PROMPTS
        row_of = np.zeros(TRACES_PER_RUN, dtype=np.int64)
        for c in range(chunks):
            part = tokens[c * CHUNK_PROMPTS : (c + 1) * CHUNK_PROMPTS]
            row_of[c * CHUNK_PROMPTS : (c + 1) * CHUNK_PROMPTS] = np.cumsum(part) - part
        l0 = rng.normal(60, 12, TRACES_PER_RUN).clip(5)
        fvu = rng.beta(2, 14, TRACES_PER_RUN)
        norm = rng.normal(120, 15, TRACES_PER_RUN).clip(40)
        hashes = [secrets.token_hex(32) for _ in range(TRACES_PER_RUN)]

        # Index rows: synthetic for most traces, from the arrays for materialized chunks.
        offset, feature, peak, count, first = synthetic_index(rng, tokens, by_rank, cdf)
        in_material = np.isin(chunk_of[offset], material)
        parts = [(offset[~in_material], feature[~in_material], peak[~in_material])]
        parts_count, parts_first = [count[~in_material]], [first[~in_material]]
        for chunk in material:
            arrays, starts = chunk_arrays(rng, by_rank, cdf, bench_features)
            write_chunk(run.artifact_prefix, chunk, arrays)
            materialized_chunks.append({"run": run.pk, "chunk": chunk})
            for j, start in enumerate(starts):
                t = chunk * CHUNK_PROMPTS + j
                f, p, n, fp = index_from_arrays(arrays, start, start + CAPTURE_LIMIT)
                parts.append((np.full(len(f), t), f, p))
                parts_count.append(n)
                parts_first.append(fp)
                hashes[t] = trace_hash(arrays, start, start + CAPTURE_LIMIT)
                l0[t] = float(arrays["l0"][start + 1 : start + CAPTURE_LIMIT].mean())
                views.append(int(trace_ids[t]))
        text_copy(
            Trace._meta.db_table,
            trace_columns,
            [
                (
                    int(trace_ids[i]),
                    run.pk,
                    int(prompt_ids[i]),
                    int(chunk_of[i]),
                    int(row_of[i]),
                    int(tokens[i]),
                    int(prompt_tokens[i]),
                    bool(truncated[i]),
                    "",
                    float(l0[i]),
                    float(fvu[i]),
                    float(norm[i]),
                    hashes[i],
                )
                for i in range(TRACES_PER_RUN)
            ],
        )
        offset = np.concatenate([p[0] for p in parts])
        order = np.lexsort((np.concatenate([p[1] for p in parts]), offset))
        rows = len(order)
        binary_copy(
            TraceFeature._meta.db_table,
            feature_columns,
            {
                "id": np.arange(next_feature, next_feature + rows),
                "trace_id": trace_ids[offset[order]],
                "feature": np.concatenate([p[1] for p in parts])[order],
                "max_activation": np.concatenate([p[2] for p in parts])[order],
                "count": np.concatenate(parts_count)[order],
                "first_position": np.concatenate(parts_first)[order],
            },
        )
        next_feature += rows
        AnalysisRun.objects.filter(pk=run.pk).update(
            tokens_done=int(tokens.sum()),
            summary={"synthetic": True, "traces": TRACES_PER_RUN, "index_rows": rows},
        )
        log(
            f"run {run.pk}: {TRACES_PER_RUN} prompts and traces, {rows:,} index rows, "
            f"{len(material)} chunk files",
            started,
        )
    PromptSet.objects.filter(pk=prompt_set.pk).update(
        token_total=token_total, token_max=token_max, over_limit_count=over
    )
    for model in (Prompt, Trace, TraceFeature):
        set_sequence(model._meta.db_table)

    with connection.cursor() as cursor:
        cursor.execute("SET maintenance_work_mem = '1GB'")
        for statement in restore:
            step = time.perf_counter()
            cursor.execute(statement)
            log(f"{statement[:90]}… ({time.perf_counter() - step:.0f} s)", started)
        # VACUUM too: it sets the visibility map, which index-only scans need (autovacuum
        # would, later; a real index grows chunk by chunk and gets vacuumed as it goes).
        cursor.execute("VACUUM ANALYZE")
    log(f"VACUUM ANALYZE done; {next_feature - 1:,} index rows in all", started)

    state = {
        "database": name,
        "sae": SAE_NAME,
        "runs": [run.pk for run in runs],
        "prompt_set": prompt_set.pk,
        "reviewer": REVIEWER,
        "password": password,
        "trace_views": views,
        "bench_features": bench_features,
        "bench_feature_ranks": list(BENCH_RANKS),
        "watched_features": sorted(watched),
        "materialized_chunks": materialized_chunks,
        "index_rows": next_feature - 1,
    }
    (data_dir / "bench-state.json").write_text(json.dumps(state, indent=2) + "\n")
    log(f"state written to {data_dir / 'bench-state.json'}", started)


if __name__ == "__main__":
    main()
