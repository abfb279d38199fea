"""Class 6 of issue 17: one redaction at every sink, covering the ways a key comes back.

A server that echoes the key (raw, upper-cased, URL-encoded, split across lines, base64, inside a
200 answer or an error) and a base URL carrying a password and a key in its query string: no
artefact of a run or an eval (stdout, stderr, JSON logs, results.json, report.md/html, the
checkpoint database and its WAL) holds any form of them.
"""

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

from fanout.agents._secrets import redact_url, register_secret, scrub
from tests.conftest import MODELS_BODY, ROOT, StubHTTPServer, chat_completion_body, json_body

KEY = "sk-hostile-Key-9f3a7c21"
PASSWORD = "pw-Hunter-2b8e"
QUERY_KEY = "qk-Query-5d1e0a"


def encodings(secret: str) -> dict[str, str]:
    """Every form of `secret` that must never be written."""
    raw = secret.encode()
    forms = {
        "raw": secret,
        "upper": secret.upper(),
        "lower": secret.lower(),
        "url-encoded": quote(secret, safe=""),
        "every char encoded": "".join(f"%{b:02X}" for b in raw),
        "json unicode escapes": "".join(f"\\u{ord(c):04x}" for c in secret),
        "url-encoded twice": quote(quote(secret, safe=""), safe=""),
        "every char url-encoded twice": "".join(f"%25{b:02x}" for b in raw),
        "html decimal entities": "".join(f"&#{ord(c)};" for c in secret),
        "html hex entities": "".join(f"&#x{ord(c):X};" for c in secret),
        "mixed": secret[:3].upper() + quote(secret[3], safe="") + "\n" + secret[4:],
        "split across lines": secret[:5] + "\n" + secret[5:],
        "split by spaces": " ".join(secret),
        "split by an escaped newline": secret[:7] + "\\n" + secret[7:],
    }
    for offset in range(3):
        encoded = base64.b64encode(b"x" * offset + raw).decode()
        forms[f"base64 at offset {offset}"] = encoded
        forms[f"urlsafe base64 at offset {offset}"] = base64.urlsafe_b64encode(
            b"x" * offset + raw
        ).decode()
    return forms


def leaks(text: str, secret: str) -> list[str]:
    """The forms of `secret` found in `text` (base64 forms by their secret-only core)."""
    found = []
    for name, form in encodings(secret).items():
        probe = form[4:-4] if "base64" in name else form
        if probe in text:
            found.append(name)
    return found


@pytest.mark.parametrize("form", list(encodings(KEY)))
def test_scrub_masks_every_form_of_a_registered_key(form: str) -> None:
    register_secret(KEY)
    text = f"the server said: {encodings(KEY)[form]} (end)"
    assert leaks(scrub(text), KEY) == []
    assert scrub(text).startswith("the server said: ") and scrub(text).endswith("(end)")


def test_scrub_masks_credentials_it_was_never_told_about() -> None:
    text = (
        "cannot reach http://user:shortpw@10.0.0.1:8080/v1?api_key=abc123&x=1: refused; "
        "Authorization: Basic dXNlcjpzaG9ydHB3; token abcdef via https://tok@h/v1?access_token=zz9"
    )
    clean = scrub(text)
    for secret in ("shortpw", "abc123", "dXNlcjpzaG9ydHB3", "zz9", "tok@"):
        assert secret not in clean
    assert "http://***@10.0.0.1:8080/v1?api_key=***&x=1" in clean
    assert redact_url("http://a:b@h/v1?token=t&v=2") == "http://***@h/v1?token=***&v=2"
    plain = "Token limit exceeded; Basic auth failed; bearer of bad news"
    assert scrub(plain) == "Token limit exceeded; Basic auth failed; bearer *** bad news"


def echo_server(method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
    """A server that echoes the key in every way it can: in answers (status 200) and errors."""
    if method == "GET":
        return 200, MODELS_BODY
    content = json.loads(body)["messages"][-1]["content"]
    forms = [*encodings(KEY).values(), PASSWORD]  # the query key is only in the third run's URL
    if "FAILS" in content:
        return 400, json_body({"error": {"message": "bad key " + " ".join(forms), "type": "x"}})
    if content.startswith("Findings: "):
        return 200, chat_completion_body("- Priya Shah [1] " + " ".join(forms))
    return 200, chat_completion_body("Priya Shah, key " + " ".join(forms))


def test_no_artefact_of_a_run_or_an_eval_holds_the_key_in_any_form(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("The account manager is Priya Shah.")
    (docs / "b.md").write_text("The account manager is Tom Becker.")
    (docs / "c.md").write_text("FAILS here.")
    dataset = tmp_path / "data.jsonl"
    dataset.write_text(
        json.dumps(
            {"id": "q", "question": "Who is the account manager?", "answer": "Priya Shah",
             "document": "The account manager is Priya Shah."}
        ) + "\n"
    )  # fmt: skip
    env = {**os.environ, "OPENAI_API_KEY": KEY, "COLUMNS": "400"}
    outputs: list[str] = []
    with StubHTTPServer(echo_server) as server:
        url = server.base_url.replace("http://", f"http://user:{PASSWORD}@")
        common = ["--backend", "openai", "--model", "m", "--base-url", url, "--retries", "0"]
        runs = [
            ["run", str(docs), "-q", "Who is the account manager?", *common,
             "--run-id", "r1", "--checkpoint", str(tmp_path / "run.db"), "--json", "--log-json"],
            ["run", str(docs), "-q", "Who is the account manager?", *common],
            ["run", str(docs), "-q", "Q", "--backend", "openai", "--model", "m", "--base-url",
             f"http://user:{PASSWORD}@127.0.0.1:9/v1?api_key={QUERY_KEY}", "--timeout", "2"],
            ["eval", "--suite", "jsonl", "--dataset", str(dataset), "--strategies",
             "isolated,monolithic", "--instances", "1", "--groups", "1", *common,
             "--out", str(tmp_path / "eval")],
        ]  # fmt: skip
        for args in runs:
            proc = subprocess.run(
                [sys.executable, "-m", "fanout", *args],
                cwd=ROOT, env=env, capture_output=True, text=True, timeout=180,
            )  # fmt: skip
            outputs += [proc.stdout, proc.stderr]
            assert proc.returncode in (0, 1, 2), proc.stderr
    assert '"sub_agent.call"' in outputs[1] and '"Priya Shah' in outputs[0]  # the run ran...
    assert "***" in outputs[0] and "***" in outputs[2]  # ...and met the echoed key
    assert "cannot reach" in outputs[5]  # the unreachable URL was named, without its secrets
    files = [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix not in (".png",)]
    assert {"run.db", "results.json", "report.md", "report.html"} <= {p.name for p in files}
    texts = outputs + [p.read_bytes().decode("utf-8", "replace") for p in files]
    for secret in (KEY, PASSWORD, QUERY_KEY):
        for i, text in enumerate(texts):
            where = f"output {i}" if i < len(outputs) else str(files[i - len(outputs)])
            assert leaks(text, secret) == [], f"{secret} leaked into {where}"
