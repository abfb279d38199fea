"""Errors raised by fanout's backends, and the base errors every fanout package shares.

The tree::

    FanoutError                      anything fanout raises on purpose
    ├── UserError                    the caller's mistake (bad config, missing file): one line in the CLI
    └── BackendError                 a model call failed; ``transient`` decides whether it is retried
        ├── BackendTimeout           the call ran past its deadline (transient)
        ├── BackendUnavailable       connection refused / reset, 5xx (transient)
        │   └── CircuitOpen          too many connection failures in a row: calls fail fast (not retried)
        ├── RateLimited              HTTP 429 (transient)
        ├── BackendRejected          400/404/422 and other permanent refusals
        │   ├── AuthenticationFailed 401/403: a rejected or missing API key
        │   └── EndpointMismatch     the model echoes the endpoint's prompt format (a base model on chat)
        ├── ContextOverflow          the prompt does not fit the model's context window
        └── OutputInvalid            structured output failed validation against its schema

Constructors only store what they are given: no logging, no I/O.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationFailed",
    "BackendError",
    "BackendRejected",
    "BackendTimeout",
    "BackendUnavailable",
    "CircuitOpen",
    "ContextOverflow",
    "EndpointMismatch",
    "FanoutError",
    "OutputInvalid",
    "RateLimited",
    "UserError",
]


class FanoutError(Exception):
    """Base of every error fanout raises deliberately."""


class UserError(FanoutError):
    """A mistake the caller can fix (bad input, missing file, bad option); shown as one line."""


class BackendError(FanoutError):
    """A model call failed.

    Attributes:
        status_code: HTTP status when the backend speaks HTTP, else None.
        transient: whether the same call may succeed if retried.
    """

    transient: bool = False

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


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
    """The prompt plus the completion budget exceed the model's context window."""


class OutputInvalid(BackendError):
    """Structured output did not validate against the requested schema."""
