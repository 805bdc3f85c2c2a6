"""Gate definitions: saved from a YAML document (the page's editor, ``manage.py gate import``),
each save a new version kept whole; and the gate keys that ``scopeweb-gate`` uses.

The document is the gate's one shape (``gates/gate_schema.json``, published at
``/gates/gate.schema.json``). It is checked against the schema, then against what it names:
the SAEs exist and read one model, the prompt set and the baseline run exist, each metric can
be measured with these settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from django.db import transaction
from django.utils import timezone

from gates.models import Gate, GateToken, GateVersion
from scopeweb.accounts.actor import Actor
from scopeweb.audit.services import audit_record
from scopeweb.documents import load_schema, parse_yaml_document
from scopeweb.jobs.models import JobState
from scopeweb.refusals import Refused
from scopeweb.retention.models import RetentionProfile
from traces.models import AnalysisRun, PromptSet, SaeRecord

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "gate_schema.json"
SCHEMA_ID = "scopeweb.gate/v1"
READ_ONLY = ("version", "schema")
RESERVED_NAMES = ("new", "signoff", "verify", "runs")  # page paths beside /gates/<name>/
DEFAULT_NEW_TOKENS = 32


class GateRefused(Refused):
    status = 400


def gate_schema() -> dict[str, Any]:
    return load_schema(SCHEMA_PATH)


def parse_gate_yaml(text: str) -> dict[str, Any]:
    """A YAML (or JSON) gate document → a checked dict; every problem named with its line or
    field."""
    return parse_yaml_document(
        text,
        schema=gate_schema(),
        what="gate",
        example="name: …, saes: […], metrics: […]",
        refusal=GateRefused,
    )


def gate_yaml(gate: Gate) -> str:
    header = f"# Scope Web gate; schema: {SCHEMA_ID}\n"
    return header + yaml.safe_dump(ordered(gate.document), sort_keys=False, allow_unicode=True)


def ordered(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` with its keys in the schema's order, at every level. PostgreSQL's jsonb
    keeps keys in its own order, so a stored document reads back in another order than it was
    written; YAML and diffs must not depend on the database."""
    schema = gate_schema()["properties"]

    def by(keys: list[str], value: dict[str, Any]) -> dict[str, Any]:
        known = {k: value[k] for k in keys if k in value}
        return known | {k: v for k, v in sorted(value.items()) if k not in known}

    out = by(list(schema), document)
    for name in ("generation", "baseline"):
        if isinstance(out.get(name), dict):
            out[name] = by(list(schema[name]["properties"]), out[name])
    if isinstance(out.get("metrics"), list):
        keys = list(schema["metrics"]["items"]["properties"])
        out["metrics"] = [by(keys, m) if isinstance(m, dict) else m for m in out["metrics"]]
    return out


def metric_thresholds(document: dict[str, Any]) -> dict[str, float]:
    """{metric name: its maximum}, in the document's order."""
    return {m["name"]: float(m["max"]) for m in document["metrics"]}


def _resolved(
    document: dict[str, Any],
) -> tuple[RetentionProfile, list[SaeRecord], PromptSet | None]:
    names = document["saes"]
    saes = sorted(SaeRecord.objects.filter(name__in=names), key=lambda s: names.index(s.name))
    missing = sorted(set(names) - {sae.name for sae in saes})
    if missing:
        raise GateRefused(
            f"These SAEs are not in the registry: {', '.join(missing)}.", field="saes"
        )
    if len({sae.model_name for sae in saes}) > 1:
        raise GateRefused("The SAEs must read one model.", field="saes")
    prompt_set = None
    if document.get("prompt_set") is not None:
        prompt_set = PromptSet.objects.filter(pk=document["prompt_set"]).first()
        if prompt_set is None:
            raise GateRefused(f"No prompt set has id {document['prompt_set']}.", field="prompt_set")
    code = document.get("profile") or (prompt_set.profile.code if prompt_set else "")
    profile = RetentionProfile.objects.filter(code=code).first() if code else None
    if profile is None:
        raise GateRefused(
            f"No retention profile has the code {code!r}." if code else
            "Name a retention profile (profile: UK, US or FR) or a prompt set.",
            field="profile",
        )  # fmt: skip
    return profile, saes, prompt_set


def _check_metrics(document: dict[str, Any], saes: list[SaeRecord]) -> None:
    names = [m["name"] for m in document["metrics"]]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise GateRefused(f"Each metric may appear once: {', '.join(twice)}.", field="metrics")
    new_tokens = document.get("generation", {}).get("new_tokens", DEFAULT_NEW_TOKENS)
    if "unsafe_output_rate" in names and not new_tokens:
        raise GateRefused(
            "unsafe_output_rate reads completions: set generation.new_tokens above 0.",
            field="generation.new_tokens",
        )
    layers = document.get("attention_layers", [])
    if "unusual_attention" in names and not layers:
        raise GateRefused(
            "unusual_attention needs attention_layers: the layers whose heads it checks.",
            field="attention_layers",
        )
    for name in names:
        if (
            name != "unusual_attention"
            and float(next(m["max"] for m in document["metrics"] if m["name"] == name)) > 1
        ):
            raise GateRefused(f"{name} is a share from 0 to 1: its max cannot pass 1.",
                              field="metrics")  # fmt: skip
    baseline = document.get("baseline", {})
    if "run" in baseline and "checkpoint" in baseline:
        raise GateRefused("Give the baseline a checkpoint or a run, not both.", field="baseline")
    if "run" in baseline:
        run = AnalysisRun.objects.filter(pk=baseline["run"]).first()
        if run is None or run.job.state != JobState.SUCCEEDED:
            raise GateRefused(
                f"The baseline run {baseline['run']} does not exist or has not finished.",
                field="baseline.run",
            )
        if len(saes) != 1 or run.sae_id != saes[0].pk:
            raise GateRefused(
                f"A baseline run reads one SAE ({run.sae.name}): the gate must name that SAE "
                "alone, or take a baseline checkpoint instead.",
                field="baseline.run",
            )


def gate_document(document: dict[str, Any], version: int) -> dict[str, Any]:
    """The document as stored: the schema id and version first, defaults filled in."""
    stored = {k: v for k, v in document.items() if k not in READ_ONLY}
    generation = {"new_tokens": DEFAULT_NEW_TOKENS, "seed": 0, **stored.get("generation", {})}
    return {
        "schema": SCHEMA_ID,
        "name": stored.pop("name"),
        "version": version,
        **stored,
        "generation": generation,
        "top_k": stored.get("top_k", 32),
    }


@transaction.atomic
def gate_save(*, document: dict[str, Any], actor: Actor, via: str = "web") -> Gate:
    """Create the document's gate, or save it as that gate's next version."""
    if document["name"].lower() in RESERVED_NAMES:
        raise GateRefused(
            f"A gate cannot be named {document['name']!r}: "
            f"{', '.join(RESERVED_NAMES)} are page addresses.",
            field="name",
        )
    profile, saes, prompt_set = _resolved(document)
    _check_metrics(document, saes)
    gate = Gate.objects.select_for_update().filter(name=document["name"]).first()
    before = gate.document if gate else None
    if gate is None:
        gate = Gate(name=document["name"], created_by=actor.user, version=1)
    else:
        gate.version += 1
    gate.document = gate_document(document, gate.version)
    gate.description = str(document.get("description", ""))
    gate.profile = profile
    gate.prompt_set = prompt_set
    gate.save()
    gate.saes.set(saes)
    GateVersion.objects.create(
        gate=gate, version=gate.version, document=gate.document, changed_by=actor.user, via=via
    )
    audit_record(
        "gate.create" if before is None else "gate.update",
        actor=actor,
        obj=gate,
        before=before,
        after=gate.document,
    )
    return gate


def gate_token_create(*, gate: Gate, name: str, actor: Actor) -> tuple[GateToken, str]:
    """A new key for ``gate``'s runs; the key itself is returned once and never stored."""
    name = name.strip()
    if not name or len(name) > 100:
        raise GateRefused("Give the key a name of 1 to 100 characters.", field="name")
    key = GateToken.new_key()
    token = GateToken.objects.create(
        gate=gate,
        name=name,
        prefix=key[:12],
        key_sha256=GateToken.hash_key(key),
        created_by=actor.user,
    )
    audit_record("gate_token.create", actor=actor, obj=token, detail={"gate": gate.name})
    return token, key


def gate_token_revoke(*, token: GateToken, actor: Actor) -> None:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        audit_record("gate_token.revoke", actor=actor, obj=token)
