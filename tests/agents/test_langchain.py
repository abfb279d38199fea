"""LangChainBackend: limits reach the model, any provider's errors are classified, completion-style
LLMs work. The cases a real server cannot produce (a non-OpenAI provider's 429, a model that reports
no usage) run on langchain-core's own fake models; the rest on a real llama_cpp.server."""

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models.fake import FakeListLLM
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

from fanout.agents.backend import CompletionRequest, Example, Prompt
from fanout.agents.errors import (
    AuthenticationFailed,
    BackendError,
    BackendRejected,
    BackendTimeout,
    BackendUnavailable,
    RateLimited,
)
from fanout.agents.langchain import LangChainBackend
from fanout.orchestrator.policy import CallPolicy
from tests.conftest import LlamaServer, close_langchain_clients

PROMPT = Prompt(
    instruction="Answer the question using only the document.",
    context="The capital of France is Paris.",
    task="What is the capital of France?",
    examples=(Example(context="The sky is blue.", task="What colour is the sky?", answer="blue"),),
)


class Replies(Iterator[AIMessage]):
    """Messages for GenericFakeChatModel; an exception in the list is raised by that call.

    A generator could not go on after raising; a retried call must get the next step.
    """

    def __init__(self, *steps: Any) -> None:
        self._steps = list(steps)

    def __next__(self) -> AIMessage:
        if not self._steps:
            raise StopIteration
        step = self._steps.pop(0)
        if isinstance(step, BaseException):
            raise step
        return AIMessage(content=step)


class ProviderError(Exception):
    """How anthropic, mistral, ollama and most httpx-based SDKs report an HTTP error."""

    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


def http_error(code: int) -> httpx.HTTPStatusError:
    request = httpx.Request("POST", "https://provider.example/v1/chat")
    return httpx.HTTPStatusError(
        f"HTTP {code}", request=request, response=httpx.Response(code, request=request)
    )


class GoogleStyleError(Exception):
    code = 503


def call(backend: LangChainBackend, **kwargs: Any) -> Any:
    return asyncio.run(backend.complete(CompletionRequest(prompt=PROMPT, **kwargs)))


@pytest.mark.parametrize(
    ("error", "expected", "transient"),
    [
        (ProviderError("overloaded", 429), RateLimited, True),
        (ProviderError("bad gateway", 502), BackendUnavailable, True),
        (ProviderError("bad request", 400), BackendRejected, False),
        (ProviderError("no key", 401), AuthenticationFailed, False),
        (http_error(429), RateLimited, True),
        (http_error(503), BackendUnavailable, True),
        (http_error(422), BackendRejected, False),
        (GoogleStyleError("unavailable"), BackendUnavailable, True),
        (TimeoutError("read timed out"), BackendTimeout, True),
        (httpx.ConnectError("connection refused"), BackendUnavailable, True),
        (ValueError("model went wrong"), BackendError, False),
    ],
)
def test_any_providers_errors_are_classified_by_status(
    error: BaseException, expected: type[BackendError], transient: bool
) -> None:
    backend = LangChainBackend(GenericFakeChatModel(messages=Replies(error)))
    with pytest.raises(expected) as raised:
        call(backend)
    assert type(raised.value) is expected
    assert raised.value.transient is transient


def test_a_wrapped_error_is_classified_by_its_cause() -> None:
    try:
        raise ProviderError("slow down", 429)
    except ProviderError as cause:
        wrapped = RuntimeError("the integration failed")
        wrapped.__cause__ = cause
    backend = LangChainBackend(GenericFakeChatModel(messages=Replies(wrapped)))
    with pytest.raises(RateLimited):
        call(backend)


def test_a_non_openai_429_is_retried_by_the_coordinator() -> None:
    from fanout import Coordinator, Document, Request

    model = GenericFakeChatModel(messages=Replies(ProviderError("overloaded", 429), "Paris"))
    coordinator = Coordinator(
        LangChainBackend(model),
        synthesis="collect",
        policy=CallPolicy(max_attempts=3, backoff_initial_s=0.01),
    )
    result = coordinator.run(
        Request(documents=(Document(id="fr.md", text="Paris."),), question="Capital?")
    )
    (sub,) = result.sub_results
    assert sub.status == "ok" and sub.output == "Paris" and sub.attempts == 2


def test_usage_is_counted_when_the_provider_reports_none() -> None:
    backend = LangChainBackend(GenericFakeChatModel(messages=Replies("Paris")))
    c = call(backend)
    assert c.text == "Paris" and c.completion_tokens > 0 and c.prompt_tokens > 10


def test_completion_style_llm_gets_few_shot_text_and_stops() -> None:
    seen: list[dict[str, Any]] = []

    class Record(BaseCallbackHandler):
        def on_llm_start(self, serialized: Any, prompts: list[str], **kwargs: Any) -> None:
            seen.append({"prompt": prompts[0], **kwargs.get("invocation_params", {})})

    llm = FakeListLLM(responses=["Paris"], callbacks=[Record()])
    backend = LangChainBackend(llm)
    assert backend.prompt_style == "completion"
    c = call(backend)
    assert c.text == "Paris" and c.prompt_tokens > 0
    (params,) = seen
    assert params["prompt"].endswith("Question: What is the capital of France?\nAnswer:")
    assert "Answer: blue" in params["prompt"]  # the worked example
    assert params["stop"] == ["\n\n", "\nDocument:", "\nQuestion:"]


def test_the_models_own_token_counter_is_used() -> None:
    model = GenericFakeChatModel(messages=Replies(), custom_get_token_ids=lambda t: [0] * len(t))
    backend = LangChainBackend(model)
    assert backend.count_tokens("twelve chars") == 12
    assert backend.tokens.exact


def test_without_a_counter_the_estimate_is_used_and_logged_once() -> None:
    from tests.conftest import capture_events as capture_logs

    backend = LangChainBackend(GenericFakeChatModel(messages=Replies()))
    with capture_logs() as logs:
        counts = [backend.count_tokens("x" * 40) for _ in range(3)]
    assert counts == [10, 10, 10]
    warnings = [e for e in logs if e["event"] == "tokens.estimated"]
    assert len(warnings) == 1 and "no tokenizer of its own" in warnings[0]["reason"]


@pytest.mark.integration
def test_limits_and_stops_reach_a_real_chat_model(smollm2_server: LlamaServer) -> None:
    from langchain_openai import ChatOpenAI

    sent: list[dict[str, Any]] = []

    class Record(BaseCallbackHandler):
        def on_chat_model_start(self, serialized: Any, messages: Any, **kwargs: Any) -> None:
            sent.append(kwargs.get("invocation_params", {}))

    model = ChatOpenAI(
        model="smollm2", base_url=smollm2_server.base_url, api_key="x", temperature=0,  # type: ignore[arg-type]
        callbacks=[Record()],
    )  # fmt: skip
    backend = LangChainBackend(model)
    essay = PROMPT.model_copy(update={"task": "Write a long essay about France."})
    c = asyncio.run(backend.complete(CompletionRequest(prompt=essay, max_tokens=5)))
    assert 0 < c.completion_tokens <= 5  # the server, not only the payload, honoured the limit
    (params,) = sent
    assert params["stop"] == ["\nDocument:", "\nQuestion:"]
    assert params["max_tokens"] == 5 and params["extra_body"] == {"max_tokens": 5}
    # The server's own tokenizer counts: the same as the model file's tokenizer in-process.
    assert backend.tokens.exact
    from fanout.agents.llama_cpp import LlamaCppBackend

    local = LlamaCppBackend.embedded("smollm2", n_ctx=256)
    text = "Tokenizers disagree about words like antidisestablishmentarianism."
    assert backend.count_tokens(text) == local.count_tokens(text)
    close_langchain_clients(model)
