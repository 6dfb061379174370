"""Local services of one home: an embedded PostgreSQL and a Chroma server (DESIGN §6)."""

from memory_pipeline.local_services.endpoints import (
    ServiceEndpoints,
    ensure_services,
    services_status,
    stop_services,
)

__all__ = ["ServiceEndpoints", "ensure_services", "services_status", "stop_services"]
