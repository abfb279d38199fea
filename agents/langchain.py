"""Any LangChain model as a fanout backend: chat models (`BaseChatModel`) and completion models (`BaseLLM`).

The call carries the coordinator's limits: the completion budget goes to the model's own limit
field (``max_tokens``, ``max_output_tokens``, ``num_predict`` or ``max_new_tokens``, whichever it
has) and stop sequences to ``stop``. The model's own retries are switched off (on a copy: the
caller's model is left as it is), so fanout's policy alone decides how often a call is repeated:
stacked, ChatOpenAI's two retries under fanout's three attempts made nine requests. Errors are classified by status code and provider-neutral
attributes (`classify.py`), so any provider's 429 is retried. A langchain-openai model pointed at
another server (llama.cpp, vLLM) is asked what that server supports, as `OpenAIBackend` does.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Literal, TypeVar

from langchain_core.callbacks import UsageMetadataCallbackHandler
from langchain_core.language_models import BaseLanguageModel
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.language_models.llms import BaseLLM
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.prompt_values import StringPromptValue
from langchain_core.runnables.config import ensure_config
from pydantic import SecretStr

from ._classify import error_for_exception
from ._portal import on_portal
from ._prompts import render_chat, render_completion, stop_sequences
from ._secrets import register_secret, register_url_secrets
from ._servers import ServerInfo, completion_schema_body, probe_server
from ._tokens import Count, TokenCounter, TokenizerUnavailable, tiktoken_count
from .backend import (
    Closeable,
    Completion,
    CompletionRequest,
    Prices,
    PromptStyle,
    parse_structured,
    text_limit,
)
from .errors import BackendClosed, BackendError, InvalidResponse, OutputInvalid

__all__ = ["LangChainBackend", "StructuredMethod"]

StructuredMethod = Literal["json_schema", "json_mode", "function_calling"]
ModelT = TypeVar("ModelT", bound=BaseLanguageModel[Any])

_ROLES = {"system": SystemMessage, "user": HumanMessage, "assistant": AIMessage}
# Where LangChain integrations keep their completion budget, most common first.
_LIMIT_FIELDS = ("max_tokens", "max_output_tokens", "num_predict", "max_new_tokens")
# OpenAI accepts at most four stop sequences.
_MAX_STOPS = 4


def _limit_field(model: BaseLanguageModel[Any]) -> str | None:
    fields = type(model).model_fields
    return next((name for name in _LIMIT_FIELDS if name in fields), None)


def _openai_compatible_url(model: BaseLanguageModel[Any]) -> str | None:
    """The base URL of a langchain-openai model pointed at a server other than OpenAI's."""
    if not type(model).__module__.startswith("langchain_openai"):
        return None
    url = getattr(model, "openai_api_base", None)
    return url if isinstance(url, str) and url and "api.openai.com" not in url else None


def _without_own_retries(model: ModelT) -> ModelT:
    """A copy of `model` whose client does not retry, sharing its connections; or `model` itself.

    langchain-openai keeps a built OpenAI client (``root_client``/``root_async_client``, retrying
    twice by default); other integrations build theirs from a ``max_retries`` field.
    """
    update: dict[str, Any] = {}
    for root_name, resource_name in (
        ("root_async_client", "async_client"),
        ("root_client", "client"),
    ):
        root = getattr(model, root_name, None)
        resource = getattr(model, resource_name, None)
        if root is None or not getattr(root, "max_retries", 0) or not hasattr(root, "with_options"):
            continue
        quiet = root.with_options(max_retries=0)
        for path in (("chat", "completions"), ("completions",)):
            found: Any = root
            for part in path:
                found = getattr(found, part, None)
            if found is not None and found is resource:
                update[root_name] = quiet
                for part in path:
                    quiet = getattr(quiet, part)
                update[resource_name] = quiet
                break
    if "max_retries" in type(model).model_fields and (getattr(model, "max_retries", 0) or 0) > 0:
        update["max_retries"] = 0
    return model.model_copy(update=update) if update else model


def _has_own_counter(model: BaseLanguageModel[Any]) -> bool:
    """Whether the model counts with its own tokenizer, not langchain-core's GPT-2 default.

    The default downloads GPT-2's tokenizer from the Hugging Face hub, and is wrong for any
    other model anyway.
    """
    cls = type(model)
    return (
        model.custom_get_token_ids is not None
        or cls.get_num_tokens is not BaseLanguageModel.get_num_tokens
        or cls.get_token_ids is not BaseLanguageModel.get_token_ids
    )


class LangChainBackend(Closeable):
    """Wraps a LangChain chat model or completion model.

    Closing the backend ends its use, not the chat model's clients: LangChain models have no close
    method, and some share one HTTP client between instances (langchain-openai does).

    Args:
        model: a `BaseChatModel` (ChatOpenAI, ChatAnthropic, ChatOllama, ...: chat prompts) or a
            `BaseLLM` (langchain-openai's OpenAI, HuggingFacePipeline, ...: few-shot completion
            prompts). Temperature and the like stay configured on the model. The backend calls a
            copy with the model's own retries switched off (``self.model``), where it can.
        context_window: its context in tokens, if known (enables chunking).
        prices: USD per million tokens.
        structured_method: how a chat model is asked for schema-shaped output
            (``with_structured_output``'s method); None picks the provider's default, or
            "function_calling" for llama-cpp-python's server, which rejects "json_schema".
        limit_field: the model field that caps completion tokens; "auto" finds it, None never
            passes a limit (then set one on the model).
    """

    def __init__(
        self,
        model: BaseChatModel | BaseLLM,
        *,
        context_window: int | None = None,
        prices: Prices | None = None,
        structured_method: StructuredMethod | None = None,
        limit_field: str | None = "auto",
    ) -> None:
        self.model = _without_own_retries(model)
        name = getattr(model, "model_name", None) or getattr(model, "model", None)
        self.name = str(name or "") or type(model).__name__
        self.prompt_style: PromptStyle = (
            "chat" if isinstance(model, BaseChatModel) else "completion"
        )
        self.context_window = context_window
        self.prices = prices or Prices()
        for value in vars(model).values():  # api keys: ChatOpenAI.openai_api_key and its kind
            if isinstance(value, SecretStr):
                register_secret(value.get_secret_value())
        self._closed = False
        self.limit_field = _limit_field(model) if limit_field == "auto" else limit_field
        self._server_url = _openai_compatible_url(model)
        register_url_secrets(self._server_url)
        self._server: ServerInfo | None = None
        self._structured_method = structured_method
        self.tokens = TokenCounter(self.name, self._find_tokenizer)
        """The model's own counter, its server's tokenizer, or the estimate (logged once)."""

    def count_tokens(self, text: str) -> int:
        """The model's own count where it has one; else the estimate, with one warning."""
        return self.tokens(text)

    def _server_info(self) -> ServerInfo | None:
        if self._server_url is None:
            return None
        if self._server is None:
            api_key = getattr(self.model, "openai_api_key", None)
            key = api_key.get_secret_value() if api_key is not None else None
            self._server = probe_server(self._server_url, api_key=key)
        return self._server

    def _find_tokenizer(self) -> Count:
        server = self._server_info()
        if server is not None:
            counter = server.counter()
            if counter is not None:
                return counter
        if _has_own_counter(self.model):
            if type(self.model).__module__.startswith("langchain_openai") and server is None:
                return tiktoken_count(self.name)  # what ChatOpenAI counts with, without retries
            return self.model.get_num_tokens
        raise TokenizerUnavailable(f"{type(self.model).__name__} has no tokenizer of its own")

    def _call_kwargs(self, request: CompletionRequest) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        if self.limit_field is not None:
            kwargs[self.limit_field] = request.max_tokens
            if self._server_url is not None:
                # langchain-openai sends max_completion_tokens, which other servers ignore.
                kwargs["extra_body"] = {"max_tokens": request.max_tokens}
        return kwargs

    def _stops(self, request: CompletionRequest) -> list[str] | None:
        """Where the model starts a new example instead of answering; none for JSON output.

        A chat answer may hold blank lines, so only the label lines stop it.
        """
        if request.json_schema is not None:
            return None
        stops = stop_sequences(request.prompt)
        if self.prompt_style == "chat":
            stops = [s for s in stops if s.strip()]
        return stops[:_MAX_STOPS]

    async def aclose(self) -> None:
        """Refuse further calls (the chat model itself stays the caller's)."""
        self._closed = True

    async def complete(self, request: CompletionRequest) -> Completion:
        """One call; any provider's error becomes fanout's transient or permanent error."""
        if self._closed:
            raise BackendClosed(f"the LangChain backend for {self.name} is closed")
        started = time.perf_counter()
        try:
            # On the portal loop: the model's own async client outlives any caller's loop.
            if self.prompt_style == "chat":
                text, data, usage = await on_portal(self._chat(request))
            else:
                text, data, usage = await on_portal(self._generate(request))
        except BackendError:
            raise
        except Exception as exc:
            raise error_for_exception(exc) from None
        prompt_tokens, completion_tokens, cached = usage
        if len(text) > text_limit(request.max_tokens):
            raise InvalidResponse(
                f"the answer holds {len(text):,} characters, far beyond what {request.max_tokens} "
                "tokens can write: refused"
            )
        if not (0 <= prompt_tokens and 0 <= completion_tokens <= request.max_tokens + 16):
            prompt_tokens = max(0, prompt_tokens)
            completion_tokens = self.count_tokens(text)  # an impossible report: our own count
        cached = min(cached, prompt_tokens)
        if data is None:
            data = parse_structured(request, text)
        return Completion(
            text=text.strip(),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cached_prompt_tokens=cached,
            latency_s=time.perf_counter() - started,
            model=self.name,
            data=data,
            cost_usd=self.prices.cost(prompt_tokens, completion_tokens, cached),
        )

    async def _chat(
        self, request: CompletionRequest
    ) -> tuple[str, dict[str, Any] | None, tuple[int, int, int]]:
        assert isinstance(self.model, BaseChatModel)
        messages: list[BaseMessage] = [
            _ROLES[m["role"]](content=m["content"]) for m in render_chat(request.prompt)
        ]
        usage = UsageMetadataCallbackHandler()
        config = ensure_config()
        config["callbacks"] = _with_handler(config.get("callbacks"), usage)
        kwargs = self._call_kwargs(request)
        data: dict[str, Any] | None = None
        structured = None
        if request.json_schema is not None:
            server = await asyncio.to_thread(self._server_info)  # its first call asks the server
            structured = self._structured(request.json_schema, server)
        if structured is not None:
            parsed = await structured.ainvoke(messages, config=config, **kwargs)
            if not isinstance(parsed, dict):
                raise OutputInvalid(f"structured output is not a JSON object: {parsed!r:.60}")
            data = parsed
            text = json.dumps(parsed)
        else:
            reply = await self.model.ainvoke(
                messages, config=config, stop=self._stops(request), **kwargs
            )
            text = reply.text if isinstance(reply.text, str) else str(reply.content)
        counted = [u for u in usage.usage_metadata.values()]
        if counted:
            prompt = sum(u["input_tokens"] for u in counted)
            read = sum(
                int(u.get("input_token_details", {}).get("cache_read") or 0) for u in counted
            )
            tokens = (prompt, sum(u["output_tokens"] for u in counted), min(max(read, 0), prompt))
        else:  # the provider reported no usage
            tokens = (self.count_tokens(_chat_text(messages)), self.count_tokens(text), 0)
        return text, data, tokens

    def _structured(self, schema: dict[str, Any], server: ServerInfo | None) -> Any:
        """The model asked for `schema`-shaped output, or None.

        With None the prompt alone asks for JSON, and the answer is parsed like any other's.
        """
        method = self._structured_method
        if method is None and server is not None and server.kind == "llama-cpp-python":
            method = "function_calling"
        schema = {"title": "output", **schema}  # providers name the tool or format after it
        try:
            if method is None:
                return self.model.with_structured_output(schema)
            return self.model.with_structured_output(schema, method=method)
        except NotImplementedError:
            return None

    async def _generate(
        self, request: CompletionRequest
    ) -> tuple[str, dict[str, Any] | None, tuple[int, int, int]]:
        assert isinstance(self.model, BaseLLM)
        prompt = render_completion(request.prompt)
        kwargs = self._call_kwargs(request)
        if request.json_schema is not None:
            server = await asyncio.to_thread(self._server_info)
            if (
                server is not None
            ):  # an OpenAI-compatible server: constrain it as OpenAIBackend does
                body = completion_schema_body(
                    request.json_schema, server.schema_format, server.kind
                )
                kwargs["extra_body"] = {**kwargs.get("extra_body", {}), **body}
        config = ensure_config()  # the caller's callbacks and tags, as `ainvoke` would pass them
        result = await self.model.agenerate_prompt(
            [StringPromptValue(text=prompt)],
            stop=self._stops(request),
            callbacks=config.get("callbacks"),
            tags=config.get("tags"),
            metadata=config.get("metadata"),
            **kwargs,
        )
        text = result.generations[0][0].text
        reported = (result.llm_output or {}).get("token_usage") or {}
        if "prompt_tokens" in reported:
            prompt_tokens = int(reported["prompt_tokens"])
            details = reported.get("prompt_tokens_details") or {}
            cached = int(details.get("cached_tokens") or 0) if isinstance(details, dict) else 0
            tokens = (
                prompt_tokens,
                int(reported.get("completion_tokens", 0)),
                min(max(cached, 0), prompt_tokens),
            )
        else:  # the provider reported no usage
            tokens = (self.count_tokens(prompt), self.count_tokens(text), 0)
        return text, None, tokens


def _chat_text(messages: list[BaseMessage]) -> str:
    return "\n".join(str(m.content) for m in messages)


def _with_handler(callbacks: Any, handler: UsageMetadataCallbackHandler) -> Any:
    """The caller's callbacks (a list or a manager) plus the usage counter."""
    if callbacks is None:
        return [handler]
    if isinstance(callbacks, list):
        return [*callbacks, handler]
    manager = callbacks.copy()
    manager.add_handler(handler, inherit=True)
    return manager
