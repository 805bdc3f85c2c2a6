"""How the API schema (drf-spectacular) describes each kind of key, so that the published
schema names the header every endpoint takes. Targets are named by path: the ingest and gate
keys' authentications live in the apps above, which the platform does not import."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


# drf-spectacular registers each subclass in an untyped __init_subclass__: hence the ignores.
class _Bearer(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    keyword = "Token"
    what = ""

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": f"`{self.keyword} <key>`: {self.what}",
        }


class PersonalTokenScheme(_Bearer):  # type: ignore[no-untyped-call]
    target_class = "scopeweb.accounts.tokens.PersonalTokenAuthentication"
    name = "personalToken"
    what = "a personal API token (sw_…), made on the API tokens page."


class IngestKeyScheme(_Bearer):  # type: ignore[no-untyped-call]
    target_class = "traces.api.ingest.IngestKeyAuthentication"
    name = "ingestKey"
    what = "an instrumentation manifest's ingest key (swi_…); `Bearer` works too."


class GateKeyScheme(_Bearer):  # type: ignore[no-untyped-call]
    target_class = "gates.api.GateKeyAuthentication"
    name = "gateKey"
    keyword = "Bearer"
    what = "a gate's key (swg_…), as scopeweb-gate sends it."
