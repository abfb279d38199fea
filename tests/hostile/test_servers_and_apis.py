"""Class 8 of issue 17: servers and APIs as their users know them.

Retry-After is honoured; a LangChain model's own retries do not multiply fanout's; an answer not
shaped like the API's is `InvalidResponse`; impossible usage is replaced; the context window is
learnt from the server, or from its overflow error, and a document that overflows is cut to fit.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from pathlib import Path

import pytest

from fanout.agents.backend import CompletionRequest, Prompt
from fanout.agents.errors import ContextOverflow, InvalidResponse
from fanout.agents.langchain import LangChainBackend
from fanout.agents.openai import OpenAIBackend
from fanout.orchestrator import CallPolicy, Coordinator, Document, Request
from tests.conftest import capture_events, close_langchain_clients
from tests.hostile.runtime_support import MisbehavingServer, Reply, completion_json

MODELS = json.dumps({"object": "list", "data": [{"id": "m", "object": "model"}]}).encode()
QUICK = {"backoff_initial_s": 0.01, "backoff_max_s": 0.05}


def answering(chat: Reply | list[Reply], *, models: bytes = MODELS, props: bytes = b"{}"):  # type: ignore[no-untyped-def]
    """A server answering GETs with `models`/`props` and each chat POST with the next reply."""
    queue = list(chat) if isinstance(chat, list) else None

    def answer(method: str, path: str, body: bytes) -> Reply:
        if method == "GET":
            return Reply(body=props if path.endswith("/props") else models)
        if "tokenize" in path:
            return Reply(status=404, body=b"{}")
        if queue is None:
            return chat  # type: ignore[return-value]
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return answer


def ask(backend: OpenAIBackend, max_tokens: int = 16) -> str:
    async def call() -> str:
        try:
            request = CompletionRequest(
                prompt=Prompt(instruction="i", task="t"), max_tokens=max_tokens
            )
            return (await backend.complete(request)).text
        finally:
            await backend.aclose()

    return asyncio.run(call())


# -- Retry-After ------------------------------------------------------------------------------


def test_a_rate_limit_is_retried_after_the_time_the_server_asks() -> None:
    limited = Reply(
        status=429, body=b'{"error": {"message": "slow down"}}', headers={"Retry-After": "1.5"}
    )
    with MisbehavingServer(
        answering([limited, limited, Reply(body=completion_json("C7"))])
    ) as server:
        result = Coordinator(
            OpenAIBackend("m", base_url=server.base_url),
            synthesis="collect",
            policy=CallPolicy(max_attempts=3, **QUICK),
        ).run(Request(documents=[Document(id="a.md", text="The code is C7.")], question="Code?"))
        arrivals = [t for *_, t in server.posts("/chat/completions")]
    assert result.sub_results[0].status == "ok"
    assert len(arrivals) == 3
    assert all(later - earlier >= 1.45 for earlier, later in itertools.pairwise(arrivals))


def test_a_wait_longer_than_the_deadline_is_not_made() -> None:
    limited = Reply(
        status=429,
        body=b'{"error": {"message": "come back tomorrow"}}',
        headers={"Retry-After": "3600"},
    )
    with MisbehavingServer(answering(limited)) as server:
        result = Coordinator(
            OpenAIBackend("m", base_url=server.base_url),
            synthesis="collect",
            policy=CallPolicy(max_attempts=3, timeout_s=5, **QUICK),
        ).run(Request(documents=[Document(id="a.md", text="The code is C7.")], question="Code?"))
        posts = len(server.posts("/chat/completions"))
    assert posts == 1
    assert "asks to retry after 3600 s, longer than the 5 s deadline" in (
        result.sub_results[0].error or ""
    )


# -- a LangChain model's own retries ------------------------------------------------------------


def test_langchain_chat_openai_retries_do_not_stack_on_fanouts() -> None:
    from langchain_openai import ChatOpenAI

    failing = Reply(status=500, body=b'{"error": {"message": "down"}}')
    with MisbehavingServer(answering(failing)) as server:
        chat = ChatOpenAI(model="m", base_url=server.base_url, api_key="not-needed")  # type: ignore[arg-type]
        backend = LangChainBackend(chat)
        try:
            result = Coordinator(
                backend,
                synthesis="collect",
                policy=CallPolicy(max_attempts=3, breaker_threshold=None, **QUICK),
            ).run(Request(documents=[Document(id="a.md", text="x")], question="Code?"))
            posts = len(server.posts("/chat/completions"))
        finally:
            close_langchain_clients(chat, backend.model)
    assert result.sub_results[0].status == "failed"
    assert posts == 3  # not 9: the model's own two retries per call are off
    assert chat.root_async_client.max_retries == 2  # the caller's model is left as it was


# -- answers not shaped like the API's ------------------------------------------------------------


def chat_body(choices: object) -> bytes:
    return json.dumps(
        {"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": choices}
    ).encode()


@pytest.mark.parametrize(
    "reply",
    [
        Reply(body=chat_body([])),
        Reply(body=chat_body([{}])),
        Reply(body=chat_body([{"message": {"role": "assistant", "content": ["not", "text"]}}])),
        Reply(body=b"[1, 2, 3]"),
        Reply(body=b'"just a string"'),
        Reply(body=b"<html><body>Welcome to nginx!</body></html>", content_type="text/html"),
    ],
    ids=["no-choices", "empty-choice", "content-list", "json-list", "json-string", "html-200"],
)
def test_an_answer_not_shaped_like_the_api_is_invalid_response(reply: Reply) -> None:
    with MisbehavingServer(answering(reply)) as server, pytest.raises(InvalidResponse):
        ask(OpenAIBackend("m", base_url=server.base_url))


def test_impossible_usage_is_replaced_by_fanouts_own_count_and_logged() -> None:
    absurd = completion_json(
        "C7", {"prompt_tokens": -3_000_000, "completion_tokens": -15, "total_tokens": 9}
    )
    with MisbehavingServer(answering(Reply(body=absurd))) as server, capture_events() as events:
        backend = OpenAIBackend("m", base_url=server.base_url)

        async def call() -> tuple[int, int]:
            try:
                completion = await backend.complete(
                    CompletionRequest(prompt=Prompt(instruction="i", task="t"), max_tokens=16)
                )
                return completion.prompt_tokens, completion.completion_tokens
            finally:
                await backend.aclose()

        prompt_tokens, completion_tokens = asyncio.run(call())
    assert prompt_tokens > 0 and 0 < completion_tokens <= 16
    assert [e["event"] for e in events].count("usage.replaced") == 1


# -- the context window -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("models", "props"),
    [
        (MODELS, json.dumps({"default_generation_settings": {"n_ctx": 2048}}).encode()),
        (
            json.dumps({"data": [{"id": "m", "object": "model", "max_model_len": 2048}]}).encode(),
            b"{}",
        ),
    ],
    ids=["llama.cpp-props", "vllm-models"],
)
def test_the_context_window_is_learnt_from_the_server(models: bytes, props: bytes) -> None:
    with MisbehavingServer(
        answering(Reply(body=completion_json("x")), models=models, props=props)
    ) as server:
        backend = OpenAIBackend("m", base_url=server.base_url)
        try:
            asyncio.run(backend.check())
        finally:
            asyncio.run(backend.aclose())
    assert backend.context_window == 2048


def overflowing_server(window_chars: int) -> MisbehavingServer:
    """llama-cpp-python's server: a prompt past the window is a 400 naming the window."""

    def answer(method: str, path: str, body: bytes) -> Reply:
        if method == "GET":
            return Reply(body=MODELS)
        if "tokenize" in path:
            return Reply(status=404, body=b"{}")
        text = json.loads(body)["messages"][-1]["content"]
        if len(text) > window_chars:
            message = (
                f"This model's maximum context length is {window_chars // 4} tokens. However, "
                f"you requested {len(text) // 4} tokens ({len(text) // 4} in the messages, 16 in "
                "the completion). Please reduce the length of the messages or completion."
            )
            return Reply(
                status=400,
                body=json.dumps(
                    {
                        "error": {
                            "message": message,
                            "type": "invalid_request_error",
                            "code": "context_length_exceeded",
                        }
                    }
                ).encode(),
            )
        codes = re.findall(r"code is (C\d+)", text)
        return Reply(body=completion_json(codes[0] if codes else "not found"))

    return MisbehavingServer(answer)


def test_an_overflow_error_becomes_context_overflow_with_the_window() -> None:
    with overflowing_server(2048 * 4) as server:
        backend = OpenAIBackend("m", base_url=server.base_url)

        async def call() -> None:
            try:
                prompt = Prompt(instruction="i", context="word " * 5000, task="t")
                await backend.complete(CompletionRequest(prompt=prompt, max_tokens=16))
            finally:
                await backend.aclose()

        with pytest.raises(ContextOverflow) as raised:
            asyncio.run(call())
    assert raised.value.context_window == 2048
    assert backend.context_window == 2048  # learnt for the next split


def test_a_document_overflowing_an_unknown_window_is_cut_to_fit_and_answered(
    tmp_path: Path,
) -> None:
    filler = "The warehouse keeps many crates of assorted goods on its shelves. " * 600
    text = filler + "The code is C42."  # ~40,000 characters, ~10,000 tokens, the fact at the end
    with overflowing_server(2048 * 4) as server:
        backend = OpenAIBackend("m", base_url=server.base_url)
        with Coordinator(
            backend, synthesis="collect", policy=CallPolicy(max_tokens=16, **QUICK)
        ) as coordinator:
            result = coordinator.run(
                Request(documents=[Document(id="big.md", text=text)], question="What is the code?")
            )
    assert result.ok, [r.error for r in result.sub_results]
    assert len(result.sub_results) > 4  # the pieces, each its own sub-agent
    assert all(r.status == "ok" for r in result.sub_results)
    assert "C42" in result.answer


@pytest.mark.integration
def test_a_9k_token_document_on_a_2048_token_llama_cpp_python_server_is_cut_and_answered(
    llama_server,  # type: ignore[no-untyped-def]
) -> None:
    filler = "The warehouse keeps many crates of assorted goods on its shelves. " * 700
    text = filler + "The access code for the ivory chest is 7716."
    backend = OpenAIBackend("gemma", base_url=llama_server.base_url, endpoint="completions")
    with Coordinator(backend, synthesis="collect", policy=CallPolicy(max_tokens=32)) as coordinator:
        assert backend.context_window is None  # the server says nowhere but in its errors
        result = coordinator.run(
            Request(
                documents=[Document(id="big.md", text=text)],
                question="What is the access code for the ivory chest?",
            )
        )
    assert backend.context_window == 2048
    assert all(r.status == "ok" for r in result.sub_results), [r.error for r in result.sub_results]
    assert len(result.sub_results) >= 4
    assert result.ok
