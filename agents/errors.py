"""Errors raised by fanout's backends, and the base errors every fanout package shares.

The tree::

    FanoutError                      anything fanout raises on purpose
    ├── UserError                    the caller's mistake (bad config, missing file): one line in the CLI;
    │                                also a ValueError, like pydantic's ValidationError for a bad model
    └── BackendError                 a model call failed; ``transient`` decides whether it is retried
        ├── BackendClosed            the backend was closed, or the interpreter is exiting: a shutdown,
        │                            never a sub-agent's result (the run stops; a resume retries)
        ├── BackendTimeout           the call ran past its deadline (transient)
        ├── BackendUnavailable       connection refused / reset, 5xx (transient)
        │   └── CircuitOpen          too many connection failures in a row: calls fail fast (not retried)
        ├── RateLimited              HTTP 429 (transient)
        ├── BackendRejected          400/404/422 and other permanent refusals
        │   ├── AuthenticationFailed 401/403: a rejected or missing API key
        │   └── EndpointMismatch     the model echoes the endpoint's prompt format (a base model on chat)
        ├── ContextOverflow          the prompt does not fit the model's context window
        ├── InvalidResponse          the endpoint answered, but not with the API's JSON
        └── OutputInvalid            structured output failed validation against its schema

Constructors only store what they are given: no logging, no I/O. Messages speak of arguments
by their library names; the CLI names its own flags.
"""

from __future__ import annotations

from pydantic import ValidationError

__all__ = [
    "AuthenticationFailed",
    "BackendClosed",
    "BackendError",
    "BackendRejected",
    "BackendTimeout",
    "BackendUnavailable",
    "CircuitOpen",
    "ContextOverflow",
    "EndpointMismatch",
    "FanoutError",
    "InvalidResponse",
    "OutputInvalid",
    "RateLimited",
    "UserError",
    "validation_message",
]


class FanoutError(Exception):
    """Base of every error fanout raises deliberately."""


class UserError(FanoutError, ValueError):
    """A mistake the caller can fix (bad input, missing file, bad option); shown as one line.

    Attributes:
        parameter: the argument at fault by its library name (``model``, ``groups``), when the
            mistake is one argument's: ``str(error)`` starts with it, and the CLI shows the flag
            that set it instead.
    """

    def __init__(self, message: str, *, parameter: str | None = None) -> None:
        super().__init__(f"{parameter}: {message}" if parameter else message)
        self.message = message
        """The message without the parameter's name."""
        self.parameter = parameter


class BackendError(FanoutError):
    """A model call failed.

    Attributes:
        status_code: HTTP status when the backend speaks HTTP, else None.
        transient: whether the same call may succeed if retried.
        retry_after_s: how long the server asked to wait before retrying (its ``Retry-After``),
            else None.
    """

    transient: bool = False

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.retry_after_s = retry_after_s


class BackendClosed(BackendError):
    """The backend was closed (or the interpreter is exiting) before or during the call.

    A shutdown, not an answer: the coordinator stops the run instead of recording it as the
    sub-agent's failure, so a resume computes that sub-agent again.
    """


class BackendTimeout(BackendError):
    """The call exceeded its per-call deadline."""

    transient = True


class BackendUnavailable(BackendError):
    """The endpoint could not be reached or answered 5xx."""

    transient = True


class CircuitOpen(BackendUnavailable):
    """The endpoint failed to connect too often in a row; calls fail at once instead of waiting."""

    transient = False


class RateLimited(BackendError):
    """The endpoint answered 429."""

    transient = True


class BackendRejected(BackendError):
    """The endpoint refused the request for good (400, 404, 422...): retrying cannot help."""


class AuthenticationFailed(BackendRejected):
    """The API key was rejected (401/403)."""


class EndpointMismatch(BackendRejected):
    """The model cannot follow the endpoint's prompt format: it echoed the prompt instead of answering.

    Typically a base model behind a chat endpoint; the message says which endpoint to use instead.
    """


class ContextOverflow(BackendError):
    """The prompt plus the completion budget exceed the model's context window.

    Attributes:
        context_window: the window the model said it has, when its error said so (servers do:
            "maximum context length is 2048"); the coordinator then cuts the document to fit.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        context_window: int | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code)
        self.context_window = context_window


class InvalidResponse(BackendError):
    """The endpoint answered, but not with the API's JSON (a web page, a proxy's error page).

    Not retried: an endpoint that is not an OpenAI-compatible API will not become one.
    """


class OutputInvalid(BackendError):
    """Structured output did not validate against the requested schema."""


def validation_message(exc: ValidationError) -> str:
    """A pydantic error as one line: the first problem and where it is.

    A `UserError` raised inside a validator (pydantic wraps every ValueError) is shown as itself.
    """
    first = exc.errors()[0]
    wrapped = first.get("ctx", {}).get("error")
    if isinstance(wrapped, UserError):
        return str(wrapped)
    where = ".".join(str(p) for p in first["loc"])
    message = str(first["msg"])
    return f"'{where}': {message}" if where else message
