"""Any langchain-core chat model as a fanout backend (usage read from ``usage_metadata``)."""

from __future__ import annotations

import time

import openai
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from pydantic import SecretStr

from .backend import (
    Closeable,
    Completion,
    CompletionRequest,
    Prices,
    PromptStyle,
    estimate_tokens,
    parse_structured,
)
from .errors import BackendError, BackendTimeout, BackendUnavailable
from .openai import map_openai_error
from .portal import on_portal
from .prompts import render_chat
from .secrets import register_secret, scrub

__all__ = ["LangChainBackend"]

_ROLES = {"system": SystemMessage, "user": HumanMessage, "assistant": AIMessage}


class LangChainBackend(Closeable):
    """Wraps a `BaseChatModel`; configure temperature and token limits on the model itself.

    Closing the backend ends its use, not the chat model's clients: LangChain models have no close
    method, and some share one HTTP client between instances (langchain-openai does).

    Args:
        model: any LangChain chat model (ChatOpenAI, ChatAnthropic, ChatOllama, ...).
        context_window: its context in tokens, if known (enables chunking).
        prices: USD per million tokens.
    """

    prompt_style: PromptStyle = "chat"

    def __init__(
        self,
        model: BaseChatModel,
        *,
        context_window: int | None = None,
        prices: Prices | None = None,
    ) -> None:
        self.model = model
        self.name = str(getattr(model, "model_name", None) or getattr(model, "model", None) or "")
        self.name = self.name or type(model).__name__
        self.context_window = context_window
        self.prices = prices or Prices()
        for value in vars(model).values():  # api keys: ChatOpenAI.openai_api_key and its kind
            if isinstance(value, SecretStr):
                register_secret(value.get_secret_value())
        self._closed = False

    def count_tokens(self, text: str) -> int:
        """An estimate (LangChain models rarely expose a local tokenizer)."""
        return estimate_tokens(text)

    async def aclose(self) -> None:
        """Refuse further calls (the chat model itself stays the caller's)."""
        self._closed = True

    async def complete(self, request: CompletionRequest) -> Completion:
        """One ``ainvoke``; provider errors are mapped to fanout's transient/permanent errors."""
        if self._closed:
            raise BackendError(f"the LangChain backend for {self.name} is closed")
        messages: list[BaseMessage] = [
            _ROLES[m["role"]](content=m["content"]) for m in render_chat(request.prompt)
        ]
        started = time.perf_counter()
        try:
            # On the portal loop: the model's own async client outlives any caller's loop.
            reply = await on_portal(self.model.ainvoke(messages))
        except openai.OpenAIError as exc:
            raise map_openai_error(exc) from None
        except TimeoutError as exc:
            raise BackendTimeout(scrub(str(exc)) or "timed out") from None
        except ConnectionError as exc:
            raise BackendUnavailable(scrub(str(exc))) from None
        except Exception as exc:
            raise BackendError(scrub(f"{type(exc).__name__}: {exc}")) from None
        text = reply.content if isinstance(reply.content, str) else str(reply.content)
        usage = getattr(reply, "usage_metadata", None) or {}
        prompt_tokens = int(usage.get("input_tokens", 0))
        completion_tokens = int(usage.get("output_tokens", 0))
        data = parse_structured(request, text)
        return Completion(
            text=text.strip(),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            latency_s=time.perf_counter() - started,
            model=self.name,
            data=data,
            cost_usd=self.prices.cost(prompt_tokens, completion_tokens),
        )
