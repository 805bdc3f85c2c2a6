"""Trace bundles, the one owner of their format: per chunk, two Parquet files plus one manifest
per run (JSON Schema in ``traces/bundle/schema.json``). Everything goes through
``scopeweb.storage``, so a bundle lives on local disk or in S3 alike, and pandas or pyarrow
open the files without this project's code.

- ``chunk-NNNNN.tokens.parquet``: one row per captured token (``token_id``, ``l0``,
  ``recon_err``, ``resid_norm``, ``is_completion``, ``redacted``); a trace is rows
  ``[row, row + tokens)``.
- ``chunk-NNNNN.features.parquet``: one row per kept (token, latent): ``feature``, ``row`` (the
  token's row in the tokens file) and ``value``, sorted by feature then row within each block
  of ``ROW_GROUP_TOKENS`` tokens. That order makes the row column a run of small steps and lets
  Parquet's delta encoding plus zstd store a top-32 token in about 60 bytes instead of 200.

A worker stores a chunk's files as ``chunk-NNNNN.<part>.parquet.<attempt>.partial`` first and
renames them (copies, on object stores) to their names above once the chunk's rows are
committed (``chunks.write_pending_chunk``); such files are never part of a bundle.

Both files hold one Parquet row group per block of ``ROW_GROUP_TOKENS`` token rows (format /3),
so a reader decodes only the blocks a trace's rows fall in: a 1000-token trace of a 32-prompt
chunk reads 2 of 32 blocks. Row groups are found from the row counts (tokens) and the ``row``
column's min/max statistics (features), which is also how files of format /2 (one sorted row
group per chunk) still read, whole.

Activation values are float16 rounded to ``VALUE_MANTISSA_BITS`` mantissa bits (relative error
at most 2^-6, 1.6 %), and ``recon_err``/``resid_norm`` float32 rounded to
``METRIC_MANTISSA_BITS`` (2^-9, 0.2 %): that is what lets them compress. The engine rounds before it
hashes (``canonicalize``), so the stored values are exactly the hashed ones.

A trace's sha256 covers its dense arrays (``trace_hash``): for each name in ``ARRAY_NAMES``, the
name in UTF-8, then the C-order bytes of its rows, where ``top_idx``/``top_val`` are
``[tokens, top_k]`` ordered by value (descending) then feature, padded with -1 / 0; then, only
when one of its tokens is redacted, ``redacted`` the same way (so a trace without redaction
hashes as in format /3).

Redaction before storage (format /4, profiles that redact before storage): the model reads the
original text, but a token inside a PII span is stored with ``token_id`` = the tokenizer's pad
id and ``redacted`` = its category's code (``REDACTION_CODES``; ``REDACTION_RUN_START`` set on
the first token of each redacted span), so its string never reaches storage while its
activations stay in place. Each tokens file carries its code table in the Parquet key-value
metadata (``REDACTION_TABLE_KEY``) and the manifest repeats it. Files without the column
(formats /2 and /3) read as "nothing redacted".

Modules:

- ``format``: the format's constants, file names, rounding, canonical order and trace hashes;
- ``redaction``: the ``redacted`` column's category codes;
- ``chunks``: encoding, storing and reading a chunk's files;
- ``manifest``: building, storing and reading back a run's manifest;
- ``export``: the token-id masking that exports apply to tokens files.
"""
