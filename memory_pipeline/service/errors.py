"""The service's errors: an HTTP status, a stable code and a one-line message each.

HTTP answers them as ``{"error": {"code", "message"}}``; MCP tools as a tool error with the
message. Messages never carry a key, a token or a password.
"""

from __future__ import annotations

from typing import Any, ClassVar


class ServiceError(Exception):
    """A request the service refuses; ``status`` and ``code`` say how (500: a bug)."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal"

    def __init_subclass__(cls, *, status: int, code: str, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.status, cls.code = status, code

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))  # one line, whatever the cause said

    @property
    def message(self) -> str:
        return str(self)


# One class per answer the API gives, so that each layer raises what it means.
class BadRequest(ServiceError, status=400, code="bad_request"): ...


class Unauthorized(ServiceError, status=401, code="unauthorized"): ...


class Forbidden(ServiceError, status=403, code="forbidden"): ...


class NotFound(ServiceError, status=404, code="not_found"): ...


class Conflict(ServiceError, status=409, code="conflict"): ...


class PayloadTooLarge(ServiceError, status=413, code="payload_too_large"): ...


class Invalid(ServiceError, status=422, code="invalid"): ...


class Unavailable(ServiceError, status=503, code="unavailable"): ...


def service_error_of(exc: BaseException) -> ServiceError | None:
    """The service error an application-layer exception means, or ``None`` (a bug: 500).

    ``ValueError`` is bad input (422); an unreachable Postgres or Chroma is 503; a write that
    lost a race with another (a unique key, a serialisation failure, a row deleted meanwhile)
    is 409, and retrying it is safe.
    """
    import psycopg
    from psycopg_pool import PoolTimeout

    from memory_pipeline.vector_store import VectorStoreUnavailable

    if isinstance(exc, ServiceError):
        return exc
    if isinstance(exc, VectorStoreUnavailable | PoolTimeout | psycopg.OperationalError):
        return Unavailable(str(exc) or type(exc).__name__)
    if isinstance(
        exc,
        psycopg.errors.UniqueViolation
        | psycopg.errors.SerializationFailure
        | psycopg.errors.DeadlockDetected,
    ):
        return Conflict(f"the write conflicted with a concurrent one; retry it ({exc})")
    if isinstance(exc, RuntimeError) and "vanished" in str(exc):
        return Conflict(f"{exc}; retry it")
    if isinstance(exc, ValueError):
        return Invalid(str(exc))
    if isinstance(exc, ConnectionError):
        return Unavailable(str(exc))
    return None
