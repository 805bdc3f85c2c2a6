"""The offline English corpus the shipped SAE is trained on, from Debian text packages.

Sources (install with ``apt-get install fortunes python3.11-doc debian-reference-en``):
fortune cookies (short prose, quotes, jokes), the Python 3.11 documentation (technical prose)
and the Debian Reference (system administration prose). Each file is recorded with its sha256
and its package's version, so the corpus can be rebuilt and checked. No test prompt set is used.
"""

from __future__ import annotations

import hashlib
import html
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

FORTUNES = Path("/usr/share/games/fortunes")
PYTHON_DOCS = Path("/usr/share/doc/python3.11/html")
DEBIAN_REFERENCE = Path("/usr/share/debian-reference")
PACKAGES = {
    "fortunes": "fortunes",
    "python-docs": "python3.11-doc",
    "debian-ref": "debian-reference-en",
}
_SKIP_FORTUNES = {"ascii-art", "art"}  # pictures made of characters, not prose
_TAG = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"[ \t]+")


@dataclass(frozen=True)
class SourceFile:
    source: str
    path: Path
    sha256: str


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _package_version(package: str) -> str:
    try:
        result = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", package],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return result.stdout.strip() or "not installed"


def list_sources() -> list[SourceFile]:
    files: list[tuple[str, Path]] = []
    if FORTUNES.is_dir():
        files += [
            ("fortunes", p)
            for p in sorted(FORTUNES.iterdir())
            if p.is_file() and not p.suffix and p.name not in _SKIP_FORTUNES
        ]
    for sub in ("tutorial", "howto", "faq", "library", "reference"):
        folder = PYTHON_DOCS / sub
        if folder.is_dir():
            files += [("python-docs", p) for p in sorted(folder.glob("*.html"))]
    if DEBIAN_REFERENCE.is_dir():
        files += [("debian-ref", p) for p in sorted(DEBIAN_REFERENCE.glob("*.en.html"))]
    missing = [name for name, package in PACKAGES.items() if not any(s == name for s, _ in files)]
    if missing:
        raise FileNotFoundError(
            "Corpus sources missing: "
            + ", ".join(f"{name} (apt-get install {PACKAGES[name]})" for name in missing)
        )
    return [SourceFile(source, path, _sha256(path)) for source, path in files]


def _html_text(raw: str) -> list[str]:
    body = raw.split('<div class="body"', 1)[-1]
    body = re.sub(r"(?s)<(script|style|pre)[^>]*>.*?</\1>", " ", body)
    text = html.unescape(_TAG.sub(" ", body))
    paragraphs = [_SPACE.sub(" ", p).strip() for p in re.split(r"\n\s*\n", text)]
    return [p.replace("\n", " ") for p in paragraphs if len(p) > 80]


def documents(sources: list[SourceFile]) -> list[str]:
    """Plain-text documents: one fortune, or one paragraph of documentation, each."""
    docs: list[str] = []
    for item in sources:
        raw = item.path.read_text(encoding="utf-8", errors="replace")
        if item.source == "fortunes":
            docs += [d.strip() for d in raw.split("\n%\n") if len(d.strip()) > 40]
        else:
            docs += _html_text(raw)
    return docs


def manifest(sources: list[SourceFile]) -> dict[str, object]:
    return {
        "packages": {pkg: _package_version(pkg) for pkg in PACKAGES.values()},
        "files": [{"source": s.source, "path": str(s.path), "sha256": s.sha256} for s in sources],
    }
