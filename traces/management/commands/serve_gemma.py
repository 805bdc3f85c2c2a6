from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from traces.ingest.models import InstrumentationManifest
from traces.services.manifests import manifest_document
from traces.services.saes import sae_folder


class Command(BaseCommand):
    help = (
        "A staging Gemma 3 server (OpenAI-compatible /v1/chat/completions and /v1/completions) "
        "with the tracer installed for a manifest: sampled requests go to the ingest API."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("service", help="The instrumentation manifest's service")
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8100)
        parser.add_argument(
            "--ingest-url",
            default="http://127.0.0.1:8000/api/ingest/v1/traces",
            help="Scope Web's plain ingest endpoint",
        )
        parser.add_argument(
            "--key",
            default=os.environ.get("SCOPEWEB_INGEST_KEY", ""),
            help="An ingest key of the manifest (default: $SCOPEWEB_INGEST_KEY)",
        )
        parser.add_argument("--no-tracing", action="store_true", help="Serve without the tracer")

    def handle(self, *args: Any, **options: Any) -> None:
        from scopeweb_tracer.shipper import Shipper
        from traces.engine import runtime
        from traces.serving import StagingHTTPServer, StagingModel, staging_tracer

        manifest = InstrumentationManifest.objects.filter(service=options["service"]).first()
        if manifest is None:
            raise CommandError(f"No manifest for the service {options['service']!r}.")
        if not options["no_tracing"] and not options["key"]:
            raise CommandError(
                "Give --key (or SCOPEWEB_INGEST_KEY): an ingest key of the manifest."
            )
        loaded = runtime.model_for(manifest.checkpoint, runtime.default_dtype())
        tracer = None
        if not options["no_tracing"]:
            saes = {
                record.name: runtime.sae_for(sae_folder(record), loaded)
                for record in manifest.saes.all()
            }
            spill = Path(settings.DATA_DIR) / f"tracer-spill-{manifest.service}.jsonl"
            shipper = Shipper(options["ingest_url"], options["key"], spill_path=spill)
            tracer = staging_tracer(loaded, manifest_document(manifest), saes, shipper.submit)
        server = StagingHTTPServer(
            (options["host"], options["port"]), StagingModel(loaded, tracer), manifest.checkpoint
        )
        traced = "without tracing" if tracer is None else f"tracing for {manifest.service}"
        self.stdout.write(
            f"Gemma 3 staging server on http://{options['host']}:{options['port']}/v1 ({traced})"
        )
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
