from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from traces.models import PromptSet, SaeRecord
from traces.services.originals import OriginalUnavailable, prompt_texts_for_analysis
from traces.services.saes import sae_folder, sae_record_quality, sae_record_target_mean


class Command(BaseCommand):
    help = (
        "Measure registered SAEs on held-out text (L0, FVU, dead-latent share, and the increase "
        "in next-token cross-entropy with the reconstruction spliced in) and store the figures "
        "on the registry page. Text: the training corpus's held-out split (needs the Debian "
        "packages fortunes, python3.11-doc, debian-reference-en), or --prompt-set ID."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("names", nargs="*", help="Registry names (default: all)")
        parser.add_argument("--prompt-set", type=int, help="Measure on this prompt set instead")
        parser.add_argument("--tokens", type=int, default=40_000, help="Held-out tokens")

    def handle(self, *args: Any, **options: Any) -> None:
        from scopeweb_tracer.hooks import hook_width
        from scopeweb_tracer.sae import SaeError, load_sae
        from traces.engine import corpus
        from traces.engine.model import load_default_model
        from traces.engine.prompt_ids import PromptInput, prompt_token_ids
        from traces.engine.quality import sae_quality, target_mean
        from traces.engine.training import TrainSettings, split_by_tokens, tokenize_documents

        records = SaeRecord.objects.all()
        if options["names"]:
            records = records.filter(name__in=options["names"])
            unknown = set(options["names"]) - set(records.values_list("name", flat=True))
            if unknown:
                raise CommandError(f"Not in the registry: {', '.join(sorted(unknown))}")
        texts: list[PromptInput] = []
        prompt_set = None
        if options["prompt_set"]:
            prompt_set = PromptSet.objects.filter(pk=options["prompt_set"]).first()
            if prompt_set is None:
                raise CommandError(f"No prompt set {options['prompt_set']}")
            try:  # what a run would analyse: for UK/FR sets, the verified original texts
                texts = prompt_texts_for_analysis(prompt_set)
            except OriginalUnavailable as exc:
                raise CommandError(str(exc)) from None
        loaded = load_default_model()
        if prompt_set is not None:
            sequences = [ids[:512] for ids in prompt_token_ids(loaded, texts)]
            source = f"prompt set {prompt_set.pk} ({prompt_set.name})"
        else:
            try:
                docs = corpus.documents(corpus.list_sources())
            except FileNotFoundError as exc:
                raise CommandError(f"{exc}; or pass --prompt-set ID") from None
            spec = TrainSettings()
            sequences = tokenize_documents(loaded, docs, spec.seq_len, spec.seed)
            _, sequences = split_by_tokens(sequences, options["tokens"])
            source = "held-out split of the training corpus"
        for record in records:
            try:
                sae = load_sae(
                    sae_folder(record),
                    n_layers=loaded.n_layers,
                    widths=lambda hook: hook_width(loaded.text_config, hook),
                )
            except SaeError as exc:
                self.stderr.write(f"{record.name}: {exc}")
                continue
            quality = sae_quality(loaded, sae, sequences).as_dict()
            sae_record_quality(record, quality, source)
            mean = target_mean(loaded, sae, sequences).tolist()
            sae_record_target_mean(record, mean, f"{source}, {int(quality['tokens'])} tokens")
            self.stdout.write(f"{record.name}: {json.dumps(quality)}")
