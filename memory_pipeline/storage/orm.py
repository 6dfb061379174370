"""A typed SQLAlchemy 2 mapping of ``memory_log`` for applications that write memories themselves.

The schema's source of truth stays ``sql/`` (a test checks that this mapping matches the migrated
tables); the mapping never creates tables. An application adds :class:`MemoryLog` rows in its own
session and commits: the table's triggers derive ``tenant_key``, make the row ``pending`` and
register the tenant, and the pipeline (the Dagster sensor, or ``memory-pipeline process``) embeds
it. A change of ``raw_data`` puts the row back to ``pending``, like ``update_memory_log``.

Unlike ``MemoryStore.create_memory_log``, a repeated ``(tenant, external_id)`` is an
``IntegrityError`` here, as for any unique key in a session. Values are checked on assignment
with the rules every front door uses (:mod:`memory_pipeline.memories`,
:mod:`memory_pipeline.tenancy`); the document size limit is the pipeline's to apply, since it
is a setting of the processing side (an oversized row is marked ``skipped`` with the reason).

    engine = create_engine(sqlalchemy_url(database_url))
    with Session(engine) as session:
        session.add(MemoryLog(user_id="alice", project_id="demo", raw_data={"content": "..."}))
        session.commit()
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pgvector.sqlalchemy import Vector
from sqlalchemy import BigInteger, Computed, FetchedValue, Identity, Integer, Text, text
from sqlalchemy.dialects.postgresql import JSONB, TIMESTAMP, TSVECTOR
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, validates

from memory_pipeline.memories import (
    validate_external_id,
    validate_occurred_at,
    validate_raw_data,
)
from memory_pipeline.tenancy import Tenant, validate_tenant_id

Timestamp = TIMESTAMP(timezone=True)
#: Set or changed by the table's triggers; SQLAlchemy reads them back after a flush.
BY_TRIGGER = FetchedValue()


def sqlalchemy_url(database_url: str) -> str:
    """A libpq URI (``memory-pipeline db url``) as a SQLAlchemy URL for psycopg 3."""
    scheme, sep, rest = database_url.partition("://")
    if not sep or scheme not in ("postgres", "postgresql"):
        raise ValueError("database_url must be a postgresql:// URI")
    return f"postgresql+psycopg://{rest}"


class Base(DeclarativeBase):
    """Declarative base of memory_pipeline's tables (kept apart from an application's own)."""


class MemoryLog(Base):
    """One memory (``sql/001_memory_log.sql``): what the application wrote and its state."""

    __tablename__ = "memory_log"
    __mapper_args__ = {"eager_defaults": True}  # trigger-set values come back with RETURNING

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    user_id: Mapped[str] = mapped_column(Text)
    project_id: Mapped[str] = mapped_column(Text)
    tenant_key: Mapped[str] = mapped_column(Text, server_default=BY_TRIGGER)
    raw_data: Mapped[dict[str, Any]] = mapped_column(JSONB)
    external_id: Mapped[str | None] = mapped_column(Text)
    memory_type: Mapped[str] = mapped_column(Text, server_default=text("'other'"))
    occurred_at: Mapped[datetime] = mapped_column(
        Timestamp, server_default=text("now()"), server_onupdate=BY_TRIGGER
    )
    occurred_at_explicit: Mapped[bool] = mapped_column(server_default=text("false"))
    search_text: Mapped[str | None] = mapped_column(Text)
    text_truncated: Mapped[bool] = mapped_column(server_default=text("false"))
    content_hash: Mapped[str | None] = mapped_column(Text)
    #: First chunk's vector of ``embedding_model`` (any dimension: the column is untyped);
    #: pgvector's type reads it as a list and writes lists or numpy arrays.
    embedding: Mapped[list[float] | None] = mapped_column(Vector())
    embedding_model: Mapped[str | None] = mapped_column(Text)
    chunk_count: Mapped[int] = mapped_column(server_default=text("0"))
    status: Mapped[str] = mapped_column(
        Text, server_default=text("'pending'"), server_onupdate=BY_TRIGGER
    )
    attempts: Mapped[int] = mapped_column(server_default=text("0"), server_onupdate=BY_TRIGGER)
    last_error: Mapped[str | None] = mapped_column(Text, server_onupdate=BY_TRIGGER)
    next_attempt_at: Mapped[datetime | None] = mapped_column(Timestamp, server_onupdate=BY_TRIGGER)
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=text("now()"))
    updated_at: Mapped[datetime] = mapped_column(
        Timestamp, server_default=text("now()"), server_onupdate=BY_TRIGGER
    )
    embedded_at: Mapped[datetime | None] = mapped_column(Timestamp)
    search_tsv: Mapped[str | None] = mapped_column(
        TSVECTOR,
        Computed("to_tsvector('english', coalesce(search_text, ''))", persisted=True),
        deferred=True,
    )

    @property
    def tenant(self) -> Tenant:
        return Tenant(self.user_id, self.project_id)

    @validates("user_id", "project_id")
    def _tenant_id(self, field: str, value: Any) -> str:
        return validate_tenant_id(value, field)

    @validates("raw_data")
    def _raw_data(self, _field: str, value: Any) -> dict[str, Any]:
        return validate_raw_data(value, max_document_bytes=None)

    @validates("external_id")
    def _external_id(self, _field: str, value: Any) -> str | None:
        return validate_external_id(value)

    @validates("occurred_at")
    def _occurred_at(self, _field: str, value: Any) -> datetime | None:
        moment = validate_occurred_at(value)
        self.occurred_at_explicit = moment is not None  # the memory's own time, kept as given
        return moment

    def __repr__(self) -> str:
        return f"MemoryLog(id={self.id!r}, tenant={self.tenant}, status={self.status!r})"


class MemoryTenant(Base):
    """A tenant the database has seen (registered by the insert trigger; read-only here)."""

    __tablename__ = "memory_tenant"

    tenant_key: Mapped[str] = mapped_column(Text, primary_key=True)
    user_id: Mapped[str] = mapped_column(Text)
    project_id: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=text("now()"))
    #: The model whose vectors serve this tenant's searches (see docs/architecture.md).
    live_model: Mapped[str | None] = mapped_column(Text)
    #: The shard whose Chroma collections hold its vectors (``None``: its own; decision 0203).
    shard: Mapped[int | None] = mapped_column(Integer)

    @property
    def tenant(self) -> Tenant:
        return Tenant(self.user_id, self.project_id, self.shard)
