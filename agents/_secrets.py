r"""Keeping credentials out of every text fanout writes: error lines, logs, results, reports, checkpoints.

Some servers echo the request's ``Authorization`` header (or the key itself) in error bodies and
even in answers, and a recorded command line holds whatever URL the user typed. Such text travels
everywhere (stderr, JSON log events, ``SubResult``, ``--json``, results.json, report.md/html, the
checkpoint database), so there is one redaction, `scrub`, and every sink applies it
(`fanout.agents._safe_text` does it for the display sinks). Each backend registers the key it was
configured with (`register_secret`) and the credentials in its base URL (`register_url_secrets`).

What `scrub` replaces with ``***``:

- a registered secret as it is, in any letter case, with any of its characters percent-encoded
  (``sk%2D...``, or twice: ``%252D``), an HTML entity (``&#45;``, ``&#x2d;``) or JSON-escaped
  (``\u002d``), split by up to three whitespace characters, line
  breaks or their escapes (``\n``, ``%0A``) between any two characters, and base64-encoded
  (standard or URL-safe alphabet, at any alignment inside a longer encoded string);
- any ``Bearer`` token and ``Basic`` credential (8 or more base64 characters), registered or not;
- the user part of any URL (``http://user:password@host`` -> ``http://***@host``), and the
  values of query parameters whose names say key, token, secret, password, auth, signature or
  credential (``?api_key=...``).

What it cannot: a secret it was never told about outside those shapes, or one rewritten another
way (hex, reversed, split by other characters). Secrets shorter than `MIN_SECRET_LENGTH` are not
registered (masking "x" everywhere would garble every message).
"""

from __future__ import annotations

import base64
import re
import threading
from typing import Any
from urllib.parse import parse_qsl, urlsplit

__all__ = [
    "MIN_SECRET_LENGTH",
    "redact_url",
    "register_secret",
    "register_url_secrets",
    "scrub",
    "scrub_value",
]

MIN_SECRET_LENGTH = 6
"""Shorter values are not registered: scrubbing "x" from every message would garble it, and a key
that short protects nothing (local servers that ignore keys get placeholders like that)."""

_MASK = "***"
_SCHEME_CREDENTIAL = re.compile(
    r"(\bBearer\s+)[^\s\"'\\,;}\])]+|(\bBasic\s+)[A-Za-z0-9+/]{8,}={0,2}", re.IGNORECASE
)
_URL_USERINFO = re.compile(r"(\b[a-z][a-z0-9+.\-]*://)[^\s/?#@\"'<>\\]*@", re.IGNORECASE)
_SECRET_NAME = (
    r"[\w.\-]*(?:key|token|secret|passw(?:or)?d|pwd|auth|signature|sig|credential)[\w.\-]*"
)
_SECRET_PARAM = re.compile(rf"([?&;]{_SECRET_NAME}=)[^&#\s\"'<>\\]+", re.IGNORECASE)
# What may sit between two characters of a secret that was split across lines or characters.
_SPLIT = r"(?:\s|\\[nrt]|%0[9ad]|%20){0,3}"
_BASE64_CORE = 8
"""Shortest base64 run that is masked: shorter cores would match ordinary words."""

_lock = threading.Lock()
_secrets: tuple[str, ...] = ()
"""Registered values, longest first (a key that contains another is masked whole)."""
_plain_pattern: re.Pattern[str] | None = None
_base64_pattern: re.Pattern[str] | None = None


def _char(ch: str) -> str:
    """One character of a secret in every written form `scrub` recognises."""
    encoded = ch.encode()
    forms = {
        re.escape(ch),
        re.escape("".join(f"%{b:02x}" for b in encoded)),  # URL-encoded
        re.escape("".join(f"%25{b:02x}" for b in encoded)),  # URL-encoded twice
        re.escape(f"&#{ord(ch)};"),  # HTML entities, decimal and hex
        re.escape(f"&#x{ord(ch):x};"),
    }
    if ord(ch) < 0x10000:
        forms.add(re.escape(f"\\u{ord(ch):04x}"))  # JSON escape
    return "(?:" + "|".join(sorted(forms)) + ")"


def _base64_cores(secret: str) -> set[str]:
    """The parts of `secret`'s base64 that do not depend on the bytes around it, per alignment."""
    raw = secret.encode()
    cores: set[str] = set()
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw).decode("ascii")
        start = 4 if offset else 0  # the first group mixes in the bytes before the secret
        end = len(encoded) - (4 if (offset + len(raw)) % 3 else 0)
        core = encoded[start:end]
        if len(core) >= _BASE64_CORE:
            cores |= {core, core.replace("+", "-").replace("/", "_")}
    return cores


def _compile() -> None:
    global _plain_pattern, _base64_pattern
    plain = [_SPLIT.join(_char(ch) for ch in secret) for secret in _secrets]
    _plain_pattern = re.compile("|".join(plain), re.IGNORECASE) if plain else None
    cores = sorted({c for secret in _secrets for c in _base64_cores(secret)}, key=len, reverse=True)
    _base64_pattern = re.compile("|".join(map(re.escape, cores))) if cores else None


def register_secret(value: str | None) -> None:
    """Mask `value` in every text that `scrub` sees from now on, in this process."""
    global _secrets
    if not value or len(value) < MIN_SECRET_LENGTH:
        return
    with _lock:
        if value not in _secrets:
            _secrets = tuple(sorted({*_secrets, value}, key=len, reverse=True))
            _compile()


def register_url_secrets(url: str | None) -> None:
    """Register the credentials a URL carries: its user name, password and secret query values."""
    if not url:
        return
    try:
        parts = urlsplit(url)
        register_secret(parts.username)
        register_secret(parts.password)
    except ValueError:  # a malformed URL: its text is still masked by `scrub`'s URL rules
        return
    for name, value in parse_qsl(parts.query):
        if re.fullmatch(_SECRET_NAME, name, re.IGNORECASE):
            register_secret(value)


def scrub(text: str) -> str:
    """`text` with every registered secret and every credential-shaped value replaced by ``***``."""
    plain, encoded = _plain_pattern, _base64_pattern
    if plain is not None:
        text = plain.sub(_MASK, text)
    if encoded is not None:
        text = encoded.sub(_MASK, text)
    # Each shape only where its marker is: most texts have none, and scrub sees every output.
    lowered = text.lower()
    if "bearer" in lowered or "basic" in lowered:
        text = _SCHEME_CREDENTIAL.sub(lambda m: f"{m.group(1) or m.group(2)}{_MASK}", text)
    if "://" in text:
        text = _URL_USERINFO.sub(rf"\g<1>{_MASK}@", text)
    if "=" in text:
        text = _SECRET_PARAM.sub(rf"\g<1>{_MASK}", text)
    return text


def scrub_value(value: Any) -> Any:
    """`value` (JSON-like: strings, lists, dicts) with `scrub` applied to every string in it."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {scrub_value(k): scrub_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub_value(v) for v in value]
    return value


def redact_url(url: str) -> str:
    """`url` fit for logs, errors and repr: no user part, no secret query values."""
    return scrub(url)
