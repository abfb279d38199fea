"""What an OpenAI-compatible server can do beyond the common API: found by asking it once.

Servers agree on chat and completions but not on structured output or tokenizing.
llama-cpp-python's server accepts only ``{"type": "json_object", "schema": ...}`` (the standard
``json_schema`` format is answered with HTTP 500) and tokenizes at ``/extras/tokenize``;
llama.cpp's own server takes ``json_schema`` and tokenizes at ``/tokenize``; OpenAI and vLLM take
``json_schema`` and have no public tokenizer route. Each of those routes is tried once with an
empty text: the answer tells the servers apart without a model call.

Every exchange here has a total deadline and a size limit (`fanout.agents._bounded_http`): a server
that drips its answer a byte at a time, or answers without end, costs at most the deadline.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from . import _bounded_http as bounded_http
from ._tokens import Count

__all__ = [
    "SchemaFormat",
    "ServerInfo",
    "ServerKind",
    "completion_schema_body",
    "probe_server",
    "server_context_window",
]

ServerKind = Literal["openai", "llama-cpp-python", "llama.cpp", "unknown"]
SchemaFormat = Literal["json_schema", "json_object"]


@dataclass(frozen=True, kw_only=True)
class ServerInfo:
    """What the probe found out about one server."""

    kind: ServerKind
    """Which server software answered (unknown: none of the known tokenizer routes exist)."""
    schema_format: SchemaFormat
    """How a JSON schema must be sent for structured output."""
    tokenize_url: str | None = None
    """The server's tokenizer route; None when it has none."""
    added_tokens: int = 0
    """Tokens the tokenizer route adds to any text (a BOS token), subtracted from counts."""
    api_key: str | None = None
    """Sent as a bearer token on tokenizer calls (never shown: not part of the repr)."""

    def __repr__(self) -> str:
        return f"ServerInfo(kind={self.kind!r}, schema_format={self.schema_format!r})"

    def counter(self, timeout_s: float = 10.0) -> Count | None:
        """Exact token counts from the server's tokenizer, or None when it has none."""
        url = self.tokenize_url
        if url is None:
            return None
        headers = _headers(self.api_key)
        llama_cpp_python = self.kind == "llama-cpp-python"

        def count(text: str) -> int:
            body = {"input": text} if llama_cpp_python else {"content": text}
            # A token list is at most a few bytes a character, plus the JSON around it.
            limit = 64 * len(text.encode("utf-8")) + 4096
            response = bounded_http.request(
                "POST", url, json=body, headers=headers, deadline_s=timeout_s, max_bytes=limit
            )
            if response.status_code != 200:
                raise ValueError(f"the tokenizer route answered HTTP {response.status_code}")
            data = json.loads(response.content)
            n = data["count"] if llama_cpp_python else len(data["tokens"])
            if not isinstance(n, int) or n < 0:
                raise ValueError(f"the tokenizer route answered a count of {n!r}")
            return max(0, n - self.added_tokens)

        return count


def _json(response: bounded_http.BoundedResponse) -> dict[str, Any]:
    """The JSON object a route answered with, or {} (an HTML 404 page, a list, ...)."""
    if response.status_code != 200:
        return {}
    try:
        data = json.loads(response.content)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def _root(base_url: str) -> str:
    """The server root: tokenizer routes sit beside /v1, not under it."""
    root = base_url.rstrip("/")
    return root[: -len("/v1")] if root.endswith("/v1") else root


def probe_server(
    base_url: str | None, *, api_key: str | None, timeout_s: float = 5.0
) -> ServerInfo:
    """Ask the server at `base_url` (None: OpenAI itself) which dialect it speaks.

    Raises:
        httpx.HTTPError: the server could not be reached, or did not answer whole within
            `timeout_s` (nothing is learnt; ask again later).
    """
    if base_url is None or "api.openai.com" in base_url:
        return ServerInfo(kind="openai", schema_format="json_schema")
    root = _root(base_url)
    headers = _headers(api_key)
    url = f"{root}/extras/tokenize/count"
    answer = _json(
        bounded_http.request("POST", url, json={"input": ""}, headers=headers, deadline_s=timeout_s)
    )
    if isinstance(answer.get("count"), int):
        return ServerInfo(
            kind="llama-cpp-python",
            schema_format="json_object",
            tokenize_url=url,
            added_tokens=answer["count"],
            api_key=api_key,
        )
    url = f"{root}/tokenize"
    answer = _json(
        bounded_http.request(
            "POST", url, json={"content": ""}, headers=headers, deadline_s=timeout_s
        )
    )
    if isinstance(answer.get("tokens"), list):
        return ServerInfo(
            kind="llama.cpp", schema_format="json_schema", tokenize_url=url, api_key=api_key
        )
    return ServerInfo(kind="unknown", schema_format="json_schema")


def _positive_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def server_context_window(
    base_url: str, *, api_key: str | None, model: str, timeout_s: float = 5.0
) -> int | None:
    """The context window the server at `base_url` says `model` has, where it says.

    llama.cpp's server tells its ``n_ctx`` at ``/props``; vLLM lists ``max_model_len`` with each
    model at ``/models``. llama-cpp-python's server tells it nowhere but in an overflow error
    (which `fanout.agents._classify` reads). None when the server does not say, or cannot be asked.
    """
    headers = _headers(api_key)
    root = _root(base_url)
    try:
        props = _json(
            bounded_http.request("GET", f"{root}/props", headers=headers, deadline_s=timeout_s)
        )
        settings = props.get("default_generation_settings")
        window = _positive_int(props.get("n_ctx")) or (
            _positive_int(settings.get("n_ctx")) if isinstance(settings, dict) else None
        )
        if window is not None:
            return window
        listing = _json(
            bounded_http.request(
                "GET", f"{base_url.rstrip('/')}/models", headers=headers, deadline_s=timeout_s
            )
        )
    except (OSError, ValueError, httpx.HTTPError):
        return None
    models = listing.get("data")
    for entry in models if isinstance(models, list) else []:
        if isinstance(entry, dict) and entry.get("id") == model:
            return _positive_int(entry.get("max_model_len"))
    return None


def completion_schema_body(
    schema: dict[str, Any], schema_format: SchemaFormat, kind: ServerKind = "unknown"
) -> dict[str, Any]:
    """Request fields that hold a /completions call to `schema`: no standard field exists.

    llama-cpp-python's server takes a GBNF ``grammar``, llama.cpp's a ``json_schema``, vLLM reads
    ``response_format``.
    """
    if schema_format == "json_object":
        from llama_cpp.llama_grammar import json_schema_to_gbnf

        return {"grammar": json_schema_to_gbnf(json.dumps(schema))}
    if kind == "llama.cpp":
        return {"json_schema": schema}
    return {
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": schema},
        }
    }
