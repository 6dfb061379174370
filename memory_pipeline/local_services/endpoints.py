"""Where the database and Chroma are: configured servers, or the home's local ones."""

from __future__ import annotations

from dataclasses import dataclass

from memory_pipeline.local_services.home_lock import home_lock
from memory_pipeline.local_services.local_chroma import (
    running_local_chroma,
    start_local_chroma,
    stop_local_chroma,
)
from memory_pipeline.local_services.local_postgres import (
    local_postgres_uri,
    start_local_postgres,
    stop_local_postgres,
)
from memory_pipeline.settings import Settings


@dataclass(frozen=True)
class ServiceEndpoints:
    """The database URL and Chroma address every component of one home uses."""

    database_url: str
    chroma_host: str
    chroma_port: int
    chroma_token: str | None = None


def ensure_services(settings: Settings) -> ServiceEndpoints:
    """Return the endpoints, starting the home's local servers for what is not configured."""
    database_url = settings.database_url
    chroma_host, chroma_port = settings.chroma_host, settings.chroma_port
    if database_url is None or chroma_host is None:
        with home_lock(settings.home):
            if database_url is None:
                database_url = start_local_postgres(settings.postgres_data_dir)
            if chroma_host is None:
                info = start_local_chroma(settings.chroma_data_dir)
                chroma_host, chroma_port = info.host, info.port
    return ServiceEndpoints(database_url, chroma_host, chroma_port, settings.chroma_token)


def services_status(settings: Settings) -> dict[str, object]:
    """What runs where, without starting anything."""
    if settings.database_url is not None:
        postgres: dict[str, object] = {"mode": "external", "running": None}
    else:
        uri = local_postgres_uri(settings.postgres_data_dir)
        postgres = {
            "mode": "embedded",
            "running": uri is not None,
            "url": uri,
            "data_dir": str(settings.postgres_data_dir),
        }
    if settings.chroma_host is not None:
        chroma: dict[str, object] = {
            "mode": "external",
            "host": settings.chroma_host,
            "port": settings.chroma_port,
        }
    else:
        info = running_local_chroma(settings.chroma_data_dir)
        chroma = {
            "mode": "local",
            "running": info is not None,
            "host": info.host if info else None,
            "port": info.port if info else None,
            "data_dir": str(settings.chroma_data_dir),
        }
    return {"home": str(settings.home), "postgres": postgres, "chroma": chroma}


def stop_services(settings: Settings) -> dict[str, bool]:
    """Stop the home's local servers (configured external ones are left alone)."""
    with home_lock(settings.home):
        stopped_pg = (
            stop_local_postgres(settings.postgres_data_dir)
            if settings.database_url is None
            else False
        )
        stopped_chroma = (
            stop_local_chroma(settings.chroma_data_dir) if settings.chroma_host is None else False
        )
    return {"postgres": stopped_pg, "chroma": stopped_chroma}
