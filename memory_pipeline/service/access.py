"""What one key may do with the memories: a tenant key its own tenant's, an admin key all.

Both of the service's doors (HTTP and MCP) act through :class:`TenantAccess`, so the rule is
written once: a tenant key implies its tenant (naming another is ``Forbidden``), and another
tenant's memory is ``NotFound``, exactly like a memory that does not exist, so an id reveals
nothing. Everything else is :class:`~memory_pipeline.MemoryStore`'s.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from memory_pipeline.memory_store import MemoryStore, MemoryWrite
from memory_pipeline.search import SearchResult
from memory_pipeline.service.errors import Forbidden, Invalid, NotFound, ServiceError
from memory_pipeline.service.keys import Principal
from memory_pipeline.tenancy import Tenant

#: The longest a request may wait for its memories to be embedded (``wait``), in seconds.
MAX_WAIT_SECONDS = 300.0


class TenantAccess:
    """The memories one principal reaches, through one :class:`MemoryStore`."""

    def __init__(self, store: MemoryStore, principal: Principal) -> None:
        self.store = store
        self.principal = principal

    # ------------------------------------------------------------------------------ tenants
    def tenant(self, user_id: str | None = None, project_id: str | None = None) -> Tenant:
        """The tenant a request means: the key's own, or the one it names if it may."""
        own = self.principal.tenant
        if own is None:
            if user_id is None or project_id is None:
                raise Invalid("user_id and project_id are required with an admin key")
            return Tenant(user_id, project_id)
        named = Tenant(
            own.user_id if user_id is None else user_id,
            own.project_id if project_id is None else project_id,
        )
        if named != own:
            raise Forbidden("this API key is for another tenant")
        return own

    def _visible(self, row: Mapping[str, Any] | None) -> bool:
        own = self.principal.tenant
        return row is not None and (
            own is None or (row["user_id"], row["project_id"]) == (own.user_id, own.project_id)
        )

    # ------------------------------------------------------------------------------- writes
    def create(self, records: Sequence[Mapping[str, Any]]) -> list[MemoryWrite | ServiceError]:
        """Store memories (tenant fields optional with a tenant key); one result per record.

        A stored record gets its :class:`MemoryWrite`; one that is invalid, or names a tenant
        this key may not reach, gets the error and is not written. The others are.
        """
        results: list[MemoryWrite | ServiceError | None] = []
        allowed: list[dict[str, Any]] = []
        tenants: dict[tuple[Any, Any], Tenant] = {}  # a batch is mostly one tenant: check it once
        for record in records:
            ids = (record.get("user_id"), record.get("project_id"))
            try:
                tenant = tenants.get(ids) if all(isinstance(i, str | None) for i in ids) else None
                if tenant is None:
                    tenant = tenants[ids] = self.tenant(*ids)  # valid ids: strings or None
            except ServiceError as exc:
                results.append(exc)
                continue
            except ValueError as exc:
                results.append(Invalid(str(exc)))
                continue
            results.append(None)
            allowed.append({**record, "user_id": tenant.user_id, "project_id": tenant.project_id})
        stored = iter(self.store.create_memory_logs(allowed))
        out: list[MemoryWrite | ServiceError] = []
        for result in results:
            if result is None:
                write = next(stored)
                result = Invalid(write.error) if write.error is not None else write
            out.append(result)
        return out

    def get(self, log_id: int) -> dict[str, Any]:
        """The memory's fields (the CLI's ``get``); ``NotFound`` if absent or not this key's."""
        row = self.store.get_memory_log(log_id)
        if not self._visible(row):
            raise NotFound(f"memory {log_id} does not exist")
        assert row is not None
        return row

    def update(self, log_id: int, raw_data: dict[str, Any]) -> None:
        """Replace the memory's ``raw_data`` (it is processed again)."""
        self.get(log_id)  # a row's tenant never changes, so checking first is enough
        try:
            self.store.update_memory_log(log_id, raw_data)
        except ValueError as exc:
            if "does not exist" in str(exc):  # deleted meanwhile
                raise NotFound(f"memory {log_id} does not exist") from None
            raise

    def delete(self, log_id: int) -> None:
        """Delete the memory; ``NotFound`` if it is not there (or not this key's)."""
        self.get(log_id)
        if not self.store.delete_memory_log(log_id):
            raise NotFound(f"memory {log_id} does not exist")

    def wait(self, ids: Iterable[int], timeout: float) -> dict[int, str]:
        """Wait up to ``timeout`` s for the memories to be embedded; their states at the end.

        Returns at the timeout with whatever states they have then (no error): who embeds
        memories is the pipeline's business (the sensor of ``memory-pipeline up``).
        """
        wanted = sorted({int(i) for i in ids})
        for log_id in wanted:
            self.get(log_id)
        timeout = min(max(float(timeout), 0.0), MAX_WAIT_SECONDS)
        try:
            return self.store.wait_until_embedded(wanted, timeout=timeout)
        except TimeoutError:
            pass
        except ValueError:  # one was deleted meanwhile
            pass
        states: dict[int, str] = {}
        for log_id in wanted:
            row = self.store.get_memory_log(log_id)
            states[log_id] = row["status"] if row else "deleted"
        return states

    # ------------------------------------------------------------------------------- search
    def search(
        self,
        query: str,
        user_id: str | None = None,
        project_id: str | None = None,
        **options: Any,
    ) -> list[SearchResult]:
        """``search_similar_memories`` in the tenant this key means."""
        tenant = self.tenant(user_id, project_id)
        return self.store.search_similar_memories(
            query, tenant.user_id, tenant.project_id, **options
        )

    def search_many(
        self,
        queries: Sequence[str],
        user_id: str | None = None,
        project_id: str | None = None,
        **options: Any,
    ) -> list[list[SearchResult]]:
        """``search_many`` in the tenant this key means."""
        tenant = self.tenant(user_id, project_id)
        return self.store.search_many(queries, tenant.user_id, tenant.project_id, **options)

    # ------------------------------------------------------------------------------- status
    def status(self) -> dict[str, Any]:
        """The ``status`` counts of the tenants this key reaches (all of them for admin)."""
        data = self.store.status()
        own = self.principal.tenant
        if own is None:
            return data
        tenants = [t for t in data["tenants"] if t["tenant_key"] == own.key]
        states = data["totals"].keys()
        return {
            "tenants": tenants,
            "totals": {s: sum(int(t[s]) for t in tenants) for s in states},
        }
