"""Credentials and keys (category ``CREDENTIAL``), found by detect-secrets' own plugins.

detect-secrets (Yelp) is the maintained scanner that pre-commit hooks and CI use for secrets in
code; its plugins know the shapes of provider tokens, and this module only turns what their
patterns match into spans of a text. No pattern here is our own:

- **Token plugins** (``RegexBasedDetector``): every regex of each plugin's ``denylist`` (AWS,
  GitHub, GitLab, Slack, OpenAI, Stripe, SendGrid, Twilio, JWT, PyPI, npm, private-key headers,
  ``https://user:pass@host`` ...). The span is the whole match without the separators the
  pattern matches around a secret (spaces, quotes, ``://``, ``@``); a private key's span runs
  from its ``-----BEGIN`` line to the matching ``-----END`` line (to the end of the text when
  that is missing, since a truncated key is still secret), and a JWT's over its signature
  (the plugin's pattern ends lazily, before it). detect-secrets' ``IPPublicDetector``
  is left out: IP addresses are the ``IP_ADDRESS`` category.
- **Keyword plugin** (``KeywordDetector``): its assignment patterns (``password: x``,
  ``api_key = "x"``, ``secret := x`` ...), as compiled in ``detect_secrets.plugins.keyword``;
  their keyword list is extended with French ones (``mot de passe : x``, ``mdp=x``) by swapping
  the keyword alternation inside those same patterns. Its value group runs to the end of the
  line, which in prose is the rest of the sentence, so the span stops at the first whitespace.
  detect-secrets' own false-positive filters drop templated values (``{x}``, ``<x>``,
  ``${x}``), ``$VARIABLES`` and indirect references (``password = get_password()``).
- **High entropy** (``Base64HighEntropyString``, detect-secrets' default limit of 4.5 bits per
  character): runs of base64 characters, found unquoted (detect-secrets' "eager" regex, meant
  for ad-hoc text rather than source files), so a key with no known prefix (``sk-ant-...``, a
  random bearer token) is still found; detect-secrets' sequential-string and UUID filters
  apply. ``HexHighEntropyString`` is left out on purpose: at its limit (3.0) every sha256,
  commit id and hex hash in an interpretability prompt would read as a secret, and a hex digest
  or UUID (at most 4 bits per character) never passes the base64 limit either.

Misses, by design of the plugins: a password in free prose ("my password is hunter2") has no
keyword-assignment shape; a short random key (under 23 characters cannot exceed 4.5 bits).
"""

from __future__ import annotations

import importlib.metadata
import re
import string
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from detect_secrets.filters import heuristic
from detect_secrets.plugins import keyword as keyword_plugin
from detect_secrets.plugins.artifactory import ArtifactoryDetector
from detect_secrets.plugins.aws import AWSKeyDetector
from detect_secrets.plugins.azure_storage_key import AzureStorageKeyDetector
from detect_secrets.plugins.base import RegexBasedDetector
from detect_secrets.plugins.basic_auth import BasicAuthDetector
from detect_secrets.plugins.cloudant import CloudantDetector
from detect_secrets.plugins.discord import DiscordBotTokenDetector
from detect_secrets.plugins.github_token import GitHubTokenDetector
from detect_secrets.plugins.gitlab_token import GitLabTokenDetector
from detect_secrets.plugins.high_entropy_strings import Base64HighEntropyString
from detect_secrets.plugins.ibm_cloud_iam import IbmCloudIamDetector
from detect_secrets.plugins.ibm_cos_hmac import IbmCosHmacDetector
from detect_secrets.plugins.jwt import JwtTokenDetector
from detect_secrets.plugins.mailchimp import MailchimpDetector
from detect_secrets.plugins.npm import NpmDetector
from detect_secrets.plugins.openai import OpenAIDetector
from detect_secrets.plugins.private_key import PrivateKeyDetector
from detect_secrets.plugins.pypi_token import PypiTokenDetector
from detect_secrets.plugins.sendgrid import SendGridDetector
from detect_secrets.plugins.slack import SlackDetector
from detect_secrets.plugins.softlayer import SoftlayerDetector
from detect_secrets.plugins.square_oauth import SquareOAuthDetector
from detect_secrets.plugins.stripe import StripeDetector
from detect_secrets.plugins.telegram_token import TelegramBotTokenDetector
from detect_secrets.plugins.twilio import TwilioKeyDetector

CATEGORY = "CREDENTIAL"
DETECT_SECRETS_VERSION = importlib.metadata.version("detect-secrets")
PREFIX = "detect-secrets:"
TOKEN_SCORE = 0.9  # a provider's token shape: as sure as a checksum
KEYWORD_SCORE = 0.7
ENTROPY_SCORE = 0.6

TOKEN_PLUGINS: tuple[type[RegexBasedDetector], ...] = (
    ArtifactoryDetector,
    AWSKeyDetector,
    AzureStorageKeyDetector,
    BasicAuthDetector,
    CloudantDetector,
    DiscordBotTokenDetector,
    GitHubTokenDetector,
    GitLabTokenDetector,
    IbmCloudIamDetector,
    IbmCosHmacDetector,
    JwtTokenDetector,
    MailchimpDetector,
    NpmDetector,
    OpenAIDetector,
    PrivateKeyDetector,
    PypiTokenDetector,
    SendGridDetector,
    SlackDetector,
    SoftlayerDetector,
    SquareOAuthDetector,
    StripeDetector,
    TelegramBotTokenDetector,
    TwilioKeyDetector,
)
# What a token pattern matches around the secret itself (BasicAuth's "://" and "@",
# Artifactory's leading space or quote, an assignment's quotes).
_AROUND = " \t\r\n\"'`=:/@"
# Keywords detect-secrets' list lacks, in the same regex-fragment form as its DENYLIST entries.
FRENCH_KEYWORDS = ("mot[ _-]?de[ _-]?passe ?", "mdp")
_JWT_CHARACTERS = frozenset(string.ascii_letters + string.digits + "-_=+/.")
_ENTROPY_MIN_LENGTH = 23  # log2(n) bits at most: shorter runs can never pass the 4.5 limit


@dataclass(frozen=True)
class Found:
    """``text[start:end]`` is a credential, found by ``detector`` (a detect-secrets plugin)."""

    start: int
    end: int
    detector: str
    score: float


def _keywords() -> str:
    return "|".join((*keyword_plugin.DENYLIST, *FRENCH_KEYWORDS))


def _keyword_patterns() -> list[tuple[re.Pattern[str], int]]:
    """Every assignment pattern of detect-secrets' keyword plugin, with the group holding the
    value, its keyword alternation widened with ``FRENCH_KEYWORDS``."""
    tables = [
        keyword_plugin.QUOTES_REQUIRED_DENYLIST_REGEX_TO_GROUP,
        *keyword_plugin.REGEX_BY_FILETYPE.values(),
    ]
    original = keyword_plugin.DENYLIST_REGEX
    widened = f"({_keywords()}){keyword_plugin.AFFIX_REGEX}"
    seen: set[str] = set()
    patterns = []
    for table in tables:
        for regex, group in table.items():
            if regex.pattern in seen:
                continue
            seen.add(regex.pattern)
            source = regex.pattern.replace(original, widened)
            patterns.append((re.compile(source, regex.flags), group))
    return patterns


def _unquoted_entropy_regex(plugin: Base64HighEntropyString) -> re.Pattern[str]:
    """detect-secrets' own regex for high-entropy strings outside quotes (its "eager" mode)."""
    with plugin.non_quoted_string_regex(is_exact_match=False):
        found: re.Pattern[str] = plugin.regex
    return found


class CredentialFinder:
    """detect-secrets' plugins, instantiated once; ``find`` is safe to call from threads (it
    only reads compiled patterns)."""

    def __init__(self) -> None:
        self.tokens = [(plugin.__name__, list(plugin().denylist)) for plugin in TOKEN_PLUGINS]
        self.keywords = _keyword_patterns()
        # Every keyword pattern holds a keyword: one search for any of them first spares the
        # other scans of a text that has none (most prompts).
        self.keyword_gate = re.compile(_keywords(), re.IGNORECASE)
        self.entropy = Base64HighEntropyString()
        self.entropy_regex = _unquoted_entropy_regex(self.entropy)

    @property
    def detector_names(self) -> list[str]:
        names = [name for name, _ in self.tokens]
        names += [keyword_plugin.KeywordDetector.__name__, Base64HighEntropyString.__name__]
        return [PREFIX + name for name in names]

    def find(self, text: str) -> list[Found]:
        found = [*self._tokens(text), *self._keywords(text), *self._high_entropy(text)]
        return sorted(set(found), key=lambda f: (f.start, -f.end, f.detector))

    def _tokens(self, text: str) -> Iterator[Found]:
        for name, patterns in self.tokens:
            for regex in patterns:
                for match in regex.finditer(text):
                    start, end = _trimmed(text, *match.span())
                    if name == PrivateKeyDetector.__name__:
                        start, end = _private_key_block(text, start, end, match.group(0))
                    elif name == JwtTokenDetector.__name__:
                        # Its pattern ends lazily (``*?``), so it stops before the signature.
                        while end < len(text) and text[end] in _JWT_CHARACTERS:
                            end += 1
                    if end > start:
                        yield Found(start, end, PREFIX + name, TOKEN_SCORE)

    def _keywords(self, text: str) -> Iterator[Found]:
        name = PREFIX + keyword_plugin.KeywordDetector.__name__
        if not self.keyword_gate.search(text):
            return
        for regex, group in self.keywords:
            for match in regex.finditer(text):
                start, end = match.span(group)
                value = text[start:end]
                words = value.split(maxsplit=1)
                if not words:
                    continue
                start += len(value) - len(value.lstrip())
                end = start + len(words[0])
                secret = text[start:end]
                line_start = text.rfind("\n", 0, start) + 1
                line_end = text.find("\n", end)
                line = text[line_start : line_end if line_end >= 0 else len(text)]
                if (
                    heuristic.is_templated_secret(secret)
                    or heuristic.is_prefixed_with_dollar_sign(secret)
                    or heuristic.is_indirect_reference(line)
                ):
                    continue
                yield Found(start, end, name, KEYWORD_SCORE)

    def _high_entropy(self, text: str) -> Iterator[Found]:
        name = PREFIX + Base64HighEntropyString.__name__
        limit = self.entropy.entropy_limit
        for match in self.entropy_regex.finditer(text):
            value = match.group(0)
            if len(value) < _ENTROPY_MIN_LENGTH:
                continue
            if self.entropy.calculate_shannon_entropy(value) <= limit:
                continue
            if heuristic.is_sequential_string(value) or heuristic.is_potential_uuid(value):
                continue
            start, end = _trimmed(text, *match.span())
            yield Found(start, end, name, ENTROPY_SCORE)


def _trimmed(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start] in _AROUND:
        start += 1
    while end > start and text[end - 1] in _AROUND:
        end -= 1
    return start, end


def _private_key_block(text: str, start: int, end: int, header: str) -> tuple[int, int]:
    """A private key's whole PEM block: from the dashes before ``BEGIN`` to the end of the
    matching ``END`` line; to the end of the text when the key has no end (a PuTTY key file
    has none either)."""
    while start > 0 and text[start - 1] == "-":
        start -= 1
    if not header.startswith("BEGIN "):
        return start, len(text)
    closing = "END " + header.removeprefix("BEGIN ")
    at = text.find(closing, end)
    if at < 0:
        return start, len(text)
    end = at + len(closing)
    while end < len(text) and text[end] == "-":
        end += 1
    return start, end


def plugin_summary() -> dict[str, Any]:
    """What the redaction report says about this detector."""
    return {
        "package": f"detect-secrets {DETECT_SECRETS_VERSION}",
        "token_plugins": [plugin.__name__ for plugin in TOKEN_PLUGINS],
        "keyword_plugin": keyword_plugin.KeywordDetector.__name__,
        "extra_keywords": list(FRENCH_KEYWORDS),
        "high_entropy": {
            "plugin": Base64HighEntropyString.__name__,
            "limit": Base64HighEntropyString().entropy_limit,
            "quotes_required": False,
        },
        "left_out": ["IPPublicDetector (IP_ADDRESS covers it)", "HexHighEntropyString"],
    }
