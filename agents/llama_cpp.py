"""In-process llama.cpp through llama-cpp-python: the embedded default and any local GGUF.

A llama.cpp context is not thread-safe and loading a model is slow, so each (model, settings) is
loaded once per process and shared by every sub-agent behind a lock; calls run on the process's
one compute thread (`fanout.agents._compute`: a second calling thread slows llama.cpp's OpenMP
workers), so the event loop keeps serving the other sub-agents' bookkeeping. With ``n_parallel``
> 1, concurrent calls decode together in a second context of the same weights
(`fanout.agents._llama_batch`).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import gc
import json
import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ._batch_policy import AUTO_SEQUENCES, CPU_MIN_ANSWER_TOKENS, AutoBatchPolicy
from ._compute import compute_thread
from ._embedded import DEFAULT_MODEL, EMBEDDED_MODELS, embedded_model_path
from ._llama_completion import common_prefix_length, completion_prompt_tokens
from ._model_cache import PULLED_MODELS, cached_model_path
from ._prompts import render_chat, render_completion, stop_sequences
from .backend import Closeable, Completion, CompletionRequest, Prices, PromptStyle
from .errors import BackendClosed, BackendError, ContextOverflow, OutputInvalid, UserError

if TYPE_CHECKING:
    from ._llama_batch import LlamaBatchEngine

__all__ = ["LlamaCppBackend", "default_model_path", "resolve_model"]


def default_model_path() -> Path:
    """The embedded Gemma 3 270M base GGUF, assembled from its PyPI package into the user cache once."""
    return embedded_model_path(DEFAULT_MODEL)


def resolve_model(model: str | Path | None) -> Path:
    """A GGUF path from a path, a model's name (``smollm2``, ``qwen2.5-coder-1.5b``), or None.

    None is the embedded default; a pulled model's name is its file in the model cache (one line
    naming ``fanout models pull`` when it is not there yet).
    """
    if model is None:
        return default_model_path()
    if isinstance(model, str) and model in EMBEDDED_MODELS:
        return embedded_model_path(model)
    if isinstance(model, str) and model in PULLED_MODELS:
        return cached_model_path(model)
    return Path(model)


def _known_models() -> str:
    return ", ".join([*EMBEDDED_MODELS, *PULLED_MODELS])


@dataclass(frozen=True)
class _ModelKey:
    path: str
    n_ctx: int
    n_gpu_layers: int
    n_threads: int | None
    seed: int
    batch_invariant: bool = False


class _LoadedModel:
    """One llama.cpp model, the lock that serialises use of its context, and who uses it.

    Freeing the native model while another thread still reads it crashes the process (a Ctrl-C
    that closed the backend while queued calls went on reached llama.cpp's freed model). So every
    use checks `closed` under a lock that freeing takes too: computations under `lock`, tokenizer
    reads under `reading()`.
    """

    def __init__(self, llama: Any) -> None:
        self.llama = llama
        self.lock = threading.Lock()
        """Held by the call using the context (and by `close` while it frees the model)."""
        self.closed = False
        """Set once `close` starts: nothing new may touch the native model after that."""
        self._life = threading.Lock()
        """Held while the tokenizer reads the model outside `lock`, and while it is freed."""
        self.users = 0
        """Open `LlamaCppBackend`s sharing this model; the last one to close frees it."""
        self._engines: dict[tuple[int, bool], LlamaBatchEngine] = {}
        self._chat_template: _ChatTemplate | None = None
        self._token_widths: dict[int, tuple[int, int]] = {}
        """Per token id: (bytes, characters started) of its piece of text."""

    def close(self) -> None:
        """Free the native model: batch engines first, then the context once no call holds it.

        Calls queued behind the running one fail with `BackendClosed` instead of starting.
        """
        with self._life:
            if self.closed:
                return
            self.closed = True
        with _models_lock:
            engines = list(self._engines.values())
            self._engines.clear()
        for engine in engines:
            engine.close()
        with self.lock, self._life:
            self.llama.close()

    @contextlib.contextmanager
    def reading(self) -> Iterator[Any]:
        """The native model, for a read outside `lock` (the tokenizer); freeing waits for it.

        Raises:
            BackendClosed: the model has been freed, or is being freed.
        """
        with self._life:
            if self.closed:
                raise BackendClosed("the llama.cpp model is closed")
            yield self.llama

    def chat_template(self) -> _ChatTemplate:
        """The GGUF's own chat template, compiled once (only chat models have one)."""
        if self._chat_template is None:
            self._chat_template = _ChatTemplate(self.llama)
        return self._chat_template

    def token_offsets(self, text: str) -> list[int]:
        """Character offsets where the tokens of `text` start: one tokenizer pass, no search.

        A token's width is its piece's length, learnt once per token id. A piece that ends inside
        a multi-byte character counts that character as started. If the pieces do not add up to the
        text (a tokenizer that rewrites it), the offsets are spread evenly instead.
        """
        data = text.encode("utf-8")
        offsets: list[int] = []
        chars = size = 0
        with self.reading() as llama:
            tokens = llama.tokenize(data, add_bos=False, special=True)
            for token in tokens:
                width = self._token_widths.get(token)
                if width is None:
                    piece = llama.detokenize([token], special=True)
                    started = sum((byte & 0xC0) != 0x80 for byte in piece)  # not a continuation
                    width = self._token_widths[token] = (len(piece), started)
                offsets.append(chars)
                size += width[0]
                chars += width[1]
        if size != len(data):
            return [i * len(text) // len(tokens) for i in range(len(tokens))]
        return offsets

    def batch_engine(self, max_sequences: int, *, share_prefix: bool) -> LlamaBatchEngine:
        """The batching engine of this size, created on first use and shared like the model."""
        with _models_lock, self.reading() as llama:
            engine = self._engines.get((max_sequences, share_prefix))
            if engine is None:
                from ._llama_batch import LlamaBatchEngine

                engine = LlamaBatchEngine(
                    llama, self.lock, max_sequences=max_sequences, share_prefix=share_prefix
                )
                self._engines[max_sequences, share_prefix] = engine
            return engine


class _ChatTemplate:
    """Renders chat messages with the GGUF's Jinja template into the text the model reads.

    ``Llama.create_chat_completion`` takes no stopping criteria, so a call could not be stopped on
    timeout or cancellation; rendering the template here and running ``create_completion`` on the
    result gives the chat path the same controls as the completion path, with the tokens and stop
    rule that llama-cpp-python's own chat handler would use.
    """

    def __init__(self, llama: Any) -> None:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        eos_id, bos_id = llama.token_eos(), llama.token_bos()
        eos = llama._model.token_get_text(eos_id) if eos_id != -1 else ""
        bos = llama._model.token_get_text(bos_id) if bos_id != -1 else ""
        self.stop_token_ids = {eos_id}
        self.stop = [eos] if eos else []
        self._formatter = Jinja2ChatFormatter(
            template=llama.metadata["tokenizer.chat_template"], eos_token=eos, bos_token=bos
        )

    def render(self, messages: list[dict[str, str]]) -> str:
        """The prompt text, special tokens (BOS, turn markers) included as the template writes them."""
        return str(self._formatter(messages=messages).prompt)  # type: ignore[arg-type]


_quiet_callback: Any = None


def _quiet_llama_logs() -> None:
    """Keep llama.cpp's real errors on stderr but drop a known-benign one it logs at error level."""
    global _quiet_callback
    if _quiet_callback is not None:
        return
    import ctypes
    import sys

    import llama_cpp

    @llama_cpp.llama_log_callback  # type: ignore[untyped-decorator]
    def callback(level: int, text: bytes, _user_data: Any) -> None:
        message = text.decode("utf-8", "replace")
        if level == 3 and "using full-size SWA cache" not in message:  # GGML_LOG_LEVEL_ERROR
            print(message, end="", file=sys.stderr)

    _quiet_callback = callback  # ctypes callbacks must outlive their registration
    llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))


def _auto_min_answer_tokens(n_gpu_layers: int) -> int | None:
    """The measured crossover for this hardware; None where batching was never measured."""
    import llama_cpp

    on_gpu = n_gpu_layers != 0 and bool(llama_cpp.llama_supports_gpu_offload())
    return None if on_gpu else CPU_MIN_ANSWER_TOKENS


def _reused_prefix(llama: Any, tokens: Sequence[int]) -> int:
    """Prompt tokens llama-cpp-python will keep from the previous call instead of evaluating.

    ``Llama.generate`` keeps the longest prefix its context shares with the new prompt, but always
    evaluates at least the prompt's last token (it needs that token's logits).
    """
    kept = common_prefix_length(llama.input_ids[: llama.n_tokens].tolist(), tokens)
    return min(kept, max(len(tokens) - 1, 0))


def _close_sampler(llama: Any) -> None:
    """Free the sampler chain ``create_completion`` left on `llama`, now rather than at some GC.

    llama-cpp-python builds a new native sampler per call and keeps it in ``llama._sampler`` until
    the next call replaces it; its cleanup callback refers back to the sampler, so the dropped one
    is only reclaimed by Python's cyclic collector, and native memory piles up between collections.
    """
    sampler = getattr(llama, "_sampler", None)
    if sampler is not None:
        llama._sampler = None
        sampler.close()


_models: dict[_ModelKey, _LoadedModel] = {}
_models_lock = threading.Lock()
_exit_hook: list[Any] = []
"""Holds `_close_all_models` once it is registered to run at interpreter exit."""


def _close_all_models() -> None:
    """At interpreter exit, free every model still loaded while llama_cpp's module is intact.

    Left to the garbage collector, ``Llama.__del__`` runs after module teardown has set the
    llama_cpp functions it calls to None, and prints a ``TypeError`` traceback per model.
    """
    gc.collect()  # per-call samplers in reference cycles go first, while they can still be freed
    with _models_lock:
        loaded = list(_models.values())
        _models.clear()
    for model in loaded:
        model.close()
    # llama_cpp opens /dev/null twice at import, for silencing model loads, and never closes it;
    # no model loads after this point, so close them rather than leave a ResourceWarning each.
    from llama_cpp import _utils

    for devnull in (_utils.outnull_file, _utils.errnull_file):
        devnull.close()


def _load(key: _ModelKey) -> _LoadedModel:
    """The shared model for `key`, loaded on first use; the caller becomes one of its users."""
    with _models_lock:
        loaded = _models.get(key)
        if loaded is None:
            from llama_cpp import Llama

            from ._llama_batch import batch_invariant_load

            _quiet_llama_logs()
            if not _exit_hook:
                _exit_hook.append(atexit.register(_close_all_models))
            try:
                with batch_invariant_load() if key.batch_invariant else contextlib.nullcontext():
                    llama = Llama(
                        model_path=key.path,
                        n_ctx=key.n_ctx,
                        n_gpu_layers=key.n_gpu_layers,
                        n_threads=key.n_threads,
                        seed=key.seed,
                        verbose=False,
                    )
            except (ValueError, RuntimeError) as exc:
                raise UserError(f"cannot load model {key.path}: not a valid GGUF ({exc})") from None
            loaded = _models[key] = _LoadedModel(llama)
        loaded.users += 1
        return loaded


def _unload(key: _ModelKey) -> None:
    """One user fewer; the last one frees the model."""
    with _models_lock:
        loaded = _models.get(key)
        if loaded is None:
            return
        loaded.users -= 1
        if loaded.users > 0:
            return
        del _models[key]
    loaded.close()


class LlamaCppBackend(Closeable):
    """A GGUF model run in this process by llama.cpp.

    Backends with the same model and settings share one loaded model; `close` (or leaving a
    ``with`` block) frees it once the last of them closes. Models still loaded at interpreter exit
    are freed then.

    Args:
        model_path: a .gguf file, the name of an embedded model ("gemma3-270m", "smollm2") or of
            a pulled one ("qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b", see
            `fanout.agents._model_cache`); None uses the embedded Gemma 3 270M base model.
        n_ctx: context window in tokens; None: the context the model was trained with, read
            from the GGUF (a fixed 4,096 cut documents that the model could read whole).
        n_gpu_layers: layers offloaded to the GPU (-1 = all; 0 = CPU only).
        n_threads: CPU threads; None lets llama.cpp choose.
        seed: sampling seed (temperature 0 is greedy regardless).
        chat: True for chat prompting, False for completion (few-shot) prompting; None decides from
            the GGUF: chat when it carries a chat template, completion otherwise (base models).
        n_parallel: above 1, concurrent completion-style calls without a JSON schema decode
            together, up to this many at a time, in one llama.cpp batch (`fanout.agents._llama_batch`);
            the rest take the sequential path. Give the coordinator at least this much
            concurrency. Costs a KV cache per sequence (about 40 MB each for the embedded model).
            "auto" (the default) batches only where batching was measured faster than the plain
            loop for this hardware and the answers' typical length (`fanout.agents._batch_policy`):
            on a CPU, once answers run to 32 tokens or more; on a GPU, never (not yet measured).
        batch_invariant: load the weights so a token's result does not depend on what else is in
            its batch (unpacked weights, no tiled small-batch kernel): batched, sequential and
            prefix-reusing calls then give bit-identical greedy output. None: on when `n_parallel`
            is a number above 1; off for "auto", whose sequential calls must run at the plain
            loop's speed (a batched answer may then differ from a sequential one in a near-tie).
        prefix_reuse: evaluate a prompt prefix already in the KV cache only once: the previous
            sequential call's (llama-cpp-python's longest-prefix match) or, when batching, any
            sequence's. On by default; turn it off only to measure what it saves.
        prices: what its tokens cost (power, hardware), when a run should report a cost; free
            by default.
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        n_ctx: int | None = None,
        n_gpu_layers: int = 0,
        n_threads: int | None = None,
        seed: int = 0,
        chat: bool | None = None,
        n_parallel: int | Literal["auto"] = "auto",
        batch_invariant: bool | None = None,
        prefix_reuse: bool = True,
        prices: Prices | None = None,
    ) -> None:
        path = resolve_model(model_path)
        if not path.is_file():
            raise UserError(
                f"model file not found: {path} (named models: {_known_models()})",
                parameter="model_path",
            )
        if n_ctx is not None and n_ctx < 1:
            raise UserError(f"must be at least 1 token, not {n_ctx}", parameter="n_ctx")
        auto = n_parallel == "auto"
        if not auto and (not isinstance(n_parallel, int) or n_parallel < 1):
            raise UserError(
                f"must be a number of at least 1 or 'auto', not {n_parallel!r}",
                parameter="n_parallel",
            )
        fixed = 1 if auto else int(n_parallel)
        invariant = fixed > 1 if batch_invariant is None else batch_invariant
        # llama.cpp reads 0 as "the trained context"
        self._key = _ModelKey(
            str(path.resolve()), n_ctx or 0, n_gpu_layers, n_threads, seed, invariant
        )
        self._model = _load(self._key)
        self._closed = False
        self._prefix_reuse = prefix_reuse
        self._batch = (
            self._model.batch_engine(fixed, share_prefix=prefix_reuse) if fixed > 1 else None
        )
        self._auto = AutoBatchPolicy(_auto_min_answer_tokens(n_gpu_layers)) if auto else None
        """How the automatic mode decides; the engine it batches in is made on first use."""
        self.name = path.name
        self.path = path
        """The GGUF file (reports state it and its hash)."""
        self.n_gpu_layers = n_gpu_layers
        """Layers offloaded to the GPU (-1: all)."""
        self.prices = prices or Prices()
        self.context_window: int | None = int(self._model.llama.n_ctx())
        if chat is None:
            chat = bool(self._model.llama.metadata.get("tokenizer.chat_template"))
        self.prompt_style: PromptStyle = "chat" if chat else "completion"

    @classmethod
    def default(cls, **kwargs: Any) -> LlamaCppBackend:
        """The embedded Gemma 3 270M base model (completion prompting), CPU unless told otherwise."""
        return cls.embedded(DEFAULT_MODEL, **kwargs)

    @classmethod
    def embedded(cls, name: str, **kwargs: Any) -> LlamaCppBackend:
        """A model shipped in a PyPI package, by name: "gemma3-270m" (base) or "smollm2" (chat)."""
        kwargs.setdefault("n_threads", os.cpu_count())
        return cls(embedded_model_path(name), **kwargs)

    @property
    def model_path(self) -> Path:
        """The GGUF file this backend runs (what an eval profile is tied to)."""
        return Path(self._key.path)

    @property
    def llama(self) -> Any:
        """The shared `llama_cpp.Llama` (hold `lock` while using it)."""
        return self._model.llama

    @property
    def lock(self) -> threading.Lock:
        """Serialises use of the shared llama.cpp context."""
        return self._model.lock

    @property
    def batch_engine(self) -> LlamaBatchEngine | None:
        """The batching engine (its ``stats`` count shared prefix tokens); None when not batching.

        In the automatic mode, None until the first call that batched.
        """
        return self._batch

    @property
    def auto_batching(self) -> AutoBatchPolicy | None:
        """The automatic mode's policy (None when `n_parallel` was a number)."""
        return self._auto

    def count_tokens(self, text: str) -> int:
        """Exact count from the model's tokenizer."""
        self._check_open()
        with self._model.reading() as llama:
            return len(llama.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def token_offsets(self, text: str) -> list[int]:
        """Where each token of `text` starts, as character offsets: chunking cuts by these."""
        self._check_open()
        return self._model.token_offsets(text)

    def close(self) -> None:
        """Stop using the shared model; the last backend using it frees it (waiting for a running call)."""
        if self._closed:
            return
        self._closed = True
        _unload(self._key)

    async def aclose(self) -> None:
        """`close` in a worker thread: freeing waits for the call that holds the model."""
        await asyncio.to_thread(self.close)

    def _check_open(self) -> None:
        if self._closed or self._model.closed:
            raise BackendClosed(f"the llama.cpp backend for {self.name} is closed")

    async def complete(self, request: CompletionRequest) -> Completion:
        """Run the call on the compute thread; a timeout or cancellation stops generation early."""
        self._check_open()
        batchable = request.json_schema is None and self.prompt_style == "completion"
        engine = self._batch
        if self._auto is not None and batchable and self._auto.should_batch():
            engine = self._batch = self._model.batch_engine(
                AUTO_SEQUENCES, share_prefix=self._prefix_reuse
            )
        if engine is not None and batchable and self._fits_sequence(engine, request):
            completion = await self._complete_batched(engine, request)
        else:
            cancelled = threading.Event()
            try:
                completion = await compute_thread().run(
                    self._complete_blocking, request, cancelled, time.perf_counter()
                )
            finally:
                cancelled.set()  # if we were cancelled, the thread stops at its next token
        if self._auto is not None and batchable:
            self._auto.record(completion.completion_tokens)
        return completion

    def _fits_sequence(self, engine: LlamaBatchEngine, request: CompletionRequest) -> bool:
        """Whether the call fits one batched sequence (shorter than the model's whole context)."""
        if engine.n_ctx >= self._model.llama.n_ctx():
            return True
        prompt = self.count_tokens(render_completion(request.prompt))
        return prompt + request.max_tokens < engine.n_ctx

    async def _complete_batched(
        self, engine: LlamaBatchEngine, request: CompletionRequest
    ) -> Completion:
        started = time.perf_counter()
        out = await engine.complete(
            render_completion(request.prompt),
            max_tokens=request.max_tokens,
            stop=stop_sequences(request.prompt),
            temperature=request.temperature,
            seed=self._key.seed,
        )
        return Completion(
            text=out.text.strip(),
            prompt_tokens=out.prompt_tokens,
            completion_tokens=out.completion_tokens,
            cached_prompt_tokens=out.shared_prefix_tokens,
            latency_s=time.perf_counter() - started - out.queue_s,
            queue_s=out.queue_s,
            model=self.name,
            cost_usd=self.prices.cost(out.prompt_tokens, out.completion_tokens),
        )

    def _complete_blocking(
        self, request: CompletionRequest, cancelled: threading.Event, requested_at: float
    ) -> Completion:
        from llama_cpp import StoppingCriteriaList
        from llama_cpp.llama_grammar import LlamaGrammar

        stop_ids: set[int] = set()

        def should_stop(tokens: Any, _logits: Any) -> bool:
            return cancelled.is_set() or (len(tokens) > 0 and int(tokens[-1]) in stop_ids)

        kwargs: dict[str, Any] = {
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "stopping_criteria": StoppingCriteriaList([should_stop]),
        }
        if request.json_schema is not None:
            kwargs["grammar"] = LlamaGrammar.from_json_schema(
                json.dumps(request.json_schema), verbose=False
            )
        with self._model.lock:
            started = time.perf_counter()  # the wait for the compute thread and the lock is queue
            if self._closed or self._model.closed:  # closed while this call waited in the queue
                raise BackendClosed(f"the llama.cpp backend for {self.name} is closed")
            if cancelled.is_set():
                raise BackendError("cancelled before it started")
            chat = self._model.chat_template() if self.prompt_style == "chat" else None
            if chat is not None:
                stop_ids.update(chat.stop_token_ids)
            llama = self._model.llama
            if not self._prefix_reuse:
                llama.reset()  # forget the cached tokens, so the whole prompt is evaluated again
            try:
                if chat is not None:
                    # The template writes BOS itself, so the text is tokenized without adding one.
                    tokens = llama.tokenize(
                        chat.render(render_chat(request.prompt)).encode("utf-8"),
                        add_bos=False,
                        special=True,
                    )
                    reused = _reused_prefix(llama, tokens)
                    out = llama.create_completion(prompt=tokens, stop=chat.stop, **kwargs)
                    text = out["choices"][0]["text"]
                else:
                    text_prompt = render_completion(request.prompt)
                    reused = _reused_prefix(llama, completion_prompt_tokens(llama, text_prompt))
                    out = llama.create_completion(
                        prompt=text_prompt,
                        stop=[] if request.json_schema else stop_sequences(request.prompt),
                        **kwargs,
                    )
                    text = out["choices"][0]["text"]
            except ValueError as exc:
                if "exceed context window" in str(exc):
                    raise ContextOverflow(str(exc)) from None
                raise BackendError(f"llama.cpp: {exc}") from None
            finally:
                _close_sampler(llama)
        usage = out["usage"]
        data = None
        if request.json_schema is not None:
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise OutputInvalid(f"grammar-constrained output is not JSON: {exc}") from None
        return Completion(
            text=text.strip(),
            prompt_tokens=usage["prompt_tokens"],
            completion_tokens=usage["completion_tokens"],
            cached_prompt_tokens=min(reused, usage["prompt_tokens"]),
            latency_s=time.perf_counter() - started,
            queue_s=started - requested_at,
            model=self.name,
            data=data,
            cost_usd=self.prices.cost(usage["prompt_tokens"], usage["completion_tokens"]),
        )
