"""The service's errors: an HTTP status, a stable code and a one-line message each.

HTTP answers them as ``{"error": {"code", "message"}}``; MCP tools as a tool error with the
message. Messages never carry a key, a token or a password.
"""

from __future__ import annotations


class ServiceError(Exception):
    """A request the service refuses; ``status`` and ``code`` say how."""

    status = 500
    code = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))  # one line, whatever the cause said

    @property
    def message(self) -> str:
        return str(self)


class BadRequest(ServiceError):
    status, code = 400, "bad_request"


class Unauthorized(ServiceError):
    status, code = 401, "unauthorized"


class Forbidden(ServiceError):
    status, code = 403, "forbidden"


class NotFound(ServiceError):
    status, code = 404, "not_found"


class Conflict(ServiceError):
    status, code = 409, "conflict"


class PayloadTooLarge(ServiceError):
    status, code = 413, "payload_too_large"


class Invalid(ServiceError):
    status, code = 422, "invalid"


class Unavailable(ServiceError):
    status, code = 503, "unavailable"


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
