"""The SAE registry. Registering reads only the folder's config and files (no torch), so the
web process and migrations can do it; measuring quality runs in a worker or a shell."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from scopeweb.refusals import Refused
from scopeweb.storage import path_sha256
from traces.models import SaeRecord

_FOLDER = re.compile(r"layer_(?P<layer>\d+)_width_(?P<width>\w+?)_l0_(?P<l0>\w+)$")
_HOOK = re.compile(r"^model\.layers\.(?P<layer>\d+)\.")


def shipped_sae_folders() -> list[Path]:
    root = Path(settings.SHIPPED_SAE_DIR)
    return sorted(path.parent for path in root.glob("*/*/*/params.safetensors"))


def default_name(folder: Path) -> str:
    return slugify(f"{folder.parent.parent.name}-{folder.parent.name}-{folder.name}")


@transaction.atomic
def sae_register(
    folder: Path, *, name: str | None = None, shipped: bool = False, reference: str = ""
) -> SaeRecord:
    """Add or refresh a registry row from a local Gemma Scope 2 folder."""
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    hook = str(config.get("hf_hook_point_in", ""))
    match = _HOOK.match(hook)
    if match is None:
        raise ValueError(f"{folder}: hook point {hook!r} does not name a layer (model.layers.N.…)")
    training = folder / "training.json"
    quality: dict[str, Any] = {}
    quality_source = ""
    if training.exists():
        quality = json.loads(training.read_text(encoding="utf-8")).get("heldout_quality", {})
        quality_source = "held-out corpus at training time (training.json)"
    width = config.get("width")
    if not width:
        found = _FOLDER.search(folder.name)
        width = found.group("width") if found else 0
    record, _ = SaeRecord.objects.update_or_create(
        name=name or default_name(folder),
        defaults={
            "reference": reference or str(folder),
            "model_name": str(config.get("model_name", "")),
            "site": folder.parent.name,
            "layer": int(match.group("layer")),
            "width": int(width) if str(width).isdigit() else 0,
            "hook_point": hook,
            "params_sha256": path_sha256(folder / "params.safetensors"),
            "shipped": shipped,
            "quality": quality,
            "quality_source": quality_source,
            "quality_measured_at": timezone.now() if quality else None,
        },
    )
    return record


def sae_register_reference(reference: str, *, name: str | None = None) -> SaeRecord:
    """Register a local folder or a hub reference (``google/gemma-scope-2-270m-pt/resid_post/
    layer_12_width_16k_l0_medium``, read through the hub client's local cache when offline).
    For shells and workers: resolving a hub reference imports the engine."""
    from scopeweb_tracer.sae import SaeError, resolve_reference

    try:
        folder = resolve_reference(reference)
    except SaeError as exc:
        raise ValueError(str(exc)) from None
    missing = [n for n in ("config.json", "params.safetensors") if not (folder / n).is_file()]
    if missing:
        raise ValueError(f"{reference}: missing {', '.join(missing)}")
    local = Path(reference).expanduser().is_dir()
    return sae_register(
        folder.resolve() if local else folder,
        name=name or (None if local else slugify(reference.replace("/", "-"))),
        reference="" if local else reference,
    )


def sae_register_shipped() -> list[SaeRecord]:
    base = Path(settings.BASE_DIR)
    records = []
    for folder in shipped_sae_folders():
        reference = str(folder.relative_to(base)) if folder.is_relative_to(base) else str(folder)
        records.append(sae_register(folder, shipped=True, reference=reference))
    return records


def sae_record_quality(record: SaeRecord, quality: dict[str, Any], source: str) -> SaeRecord:
    record.quality = quality
    record.quality_source = source
    record.quality_measured_at = timezone.now()
    record.save(update_fields=["quality", "quality_source", "quality_measured_at"])
    return record


def sae_record_target_mean(record: SaeRecord, mean: list[float], source: str) -> SaeRecord:
    """Record the dataset-level mean that runs centre FVU on (``traces.engine.quality``)."""
    record.target_mean = [float(value) for value in mean]
    record.target_mean_source = source
    record.save(update_fields=["target_mean", "target_mean_source"])
    return record


def sae_folder(record: SaeRecord) -> str:
    """What the engine's loader takes: an absolute folder, or the hub reference."""
    path = Path(record.reference)
    if not path.is_absolute() and (Path(settings.BASE_DIR) / path).is_dir():
        return str(Path(settings.BASE_DIR) / path)
    return record.reference


# Gemma Scope 2's sweep ("deep-dive") layers, by model size.
SWEEP_LAYERS = {"270m": (5, 9, 12, 15)}
_SIZE = re.compile(r"gemma-3-(?P<size>\d+[mb])", re.IGNORECASE)


def sae_sweep(model_name: str, site: str = "resid_post") -> list[SaeRecord]:
    """The registered SAEs of ``site`` at the model's sweep layers, one per layer (16k wide when
    there is one, else the narrowest): the preset that analyses a model's sweep in one run."""
    found = _SIZE.search(model_name)
    size = found.group("size").lower() if found else ""
    if size not in SWEEP_LAYERS:
        known = ", ".join(f"gemma-3-{s}" for s in SWEEP_LAYERS)
        raise Refused(
            f"No sweep layers are known for {model_name!r} (known: {known}).",
            field="preset",
            status=400,
        )
    chosen, missing = [], []
    for layer in SWEEP_LAYERS[size]:
        candidates = [
            r
            for r in SaeRecord.objects.filter(site=site, layer=layer).order_by("width", "name")
            if (m := _SIZE.search(r.model_name)) and m.group("size").lower() == size
        ]
        if not candidates:
            missing.append(layer)
            continue
        chosen.append(next((r for r in candidates if r.width == 16384), candidates[0]))
    if missing:
        raise Refused(
            f"The sweep of {model_name} needs a {site} SAE at layers "
            f"{', '.join(map(str, SWEEP_LAYERS[size]))}; none is registered at "
            f"{', '.join(map(str, missing))}. Register them with manage.py register_sae.",
            field="preset",
            status=400,
        )
    return chosen
