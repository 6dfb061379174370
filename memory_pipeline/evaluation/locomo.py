"""LoCoMo retrieval evaluation (``python -m memory_pipeline.evaluation.locomo``).

Follows the protocol of ``../shared/data/locomo-dev/README.md``: one conversation is one tenant
(``user_id`` = file stem, ``project_id`` = ``"locomo"``), one turn is one memory (``raw_data`` =
the turn's fields plus ``session`` and ``session_date_time``, ``external_id`` = ``dia_id``); every
question with evidence is asked of its tenant and scored by recall@k over the returned dia_ids.

The memories go through the ordinary pipeline (extraction, embedding, Chroma, Postgres) and
are searched with the ordinary search, so the numbers describe the product, not a special path.
Beside each search mode it prints an exact dense baseline computed in the same run: numpy brute
force over the very vectors the pipeline stored.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from memory_pipeline.evaluation.scoring import CategoryScores, recall_at_k
from memory_pipeline.settings import EMBEDDING_BACKENDS

__all__ = ["recall_at_k"]  # re-exported: the loader's tests and older callers use it here

PROJECT_ID = "locomo"
KS: tuple[int, ...] = (5, 10)
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "locomo-dev"
DEFAULT_EVAL_HOME = Path(".memory_pipeline") / "eval"

_SESSION_KEY = re.compile(r"^session_(\d+)$")
_EVIDENCE_SEPARATORS = re.compile(r"[;\s]+")


@dataclass(frozen=True)
class LocomoTurn:
    """One turn of a conversation, as the memory it becomes."""

    dia_id: str
    raw_data: dict[str, Any]


@dataclass(frozen=True)
class LocomoQuestion:
    """A question with its evidence turns (only ids that exist in the conversation)."""

    question: str
    evidence: tuple[str, ...]
    category: int | None


@dataclass(frozen=True)
class LocomoConversation:
    """One conversation: a tenant's memories and the questions asked of them."""

    name: str
    turns: tuple[LocomoTurn, ...]
    questions: tuple[LocomoQuestion, ...]
    skipped_questions: int

    @property
    def user_id(self) -> str:
        return self.name


def parse_evidence(entries: Iterable[Any], known_ids: set[str] | frozenset[str]) -> tuple[str, ...]:
    """The evidence dia_ids of a question: each entry split on ``;`` and whitespace, unknown ids
    dropped, duplicates removed (first occurrence kept)."""
    out: list[str] = []
    for entry in entries or ():
        for part in _EVIDENCE_SEPARATORS.split(str(entry)):
            if part and part in known_ids and part not in out:
                out.append(part)
    return tuple(out)


def parse_conversation(name: str, document: dict[str, Any]) -> LocomoConversation:
    """Turns and scored questions of one LoCoMo conversation document.

    Only ``session_N`` lists are memories; summaries, observations and events are annotations.
    """
    conversation = document.get("conversation", document)
    sessions = sorted(
        (int(m.group(1)), value)
        for key, value in conversation.items()
        if (m := _SESSION_KEY.match(key)) and isinstance(value, list)
    )
    turns: list[LocomoTurn] = []
    for number, session_turns in sessions:
        when = conversation.get(f"session_{number}_date_time")
        for turn in session_turns:
            if not isinstance(turn, dict) or not turn.get("dia_id"):
                continue
            raw = {**turn, "session": number}
            if when:
                raw["session_date_time"] = when
            turns.append(LocomoTurn(str(turn["dia_id"]), raw))
    known = frozenset(t.dia_id for t in turns)
    questions: list[LocomoQuestion] = []
    skipped = 0
    for qa in document.get("qa", []):
        evidence = parse_evidence(qa.get("evidence", []), known)
        text = str(qa.get("question") or "").strip()
        if not evidence or not text:
            skipped += 1
            continue
        category = qa.get("category")
        questions.append(
            LocomoQuestion(text, evidence, int(category) if category is not None else None)
        )
    return LocomoConversation(name, tuple(turns), tuple(questions), skipped)


def load_conversations(data_dir: Path = DEFAULT_DATA_DIR) -> list[LocomoConversation]:
    """Every ``*.json`` conversation of ``data_dir``, by file name."""
    files = sorted(Path(data_dir).glob("*.json"))
    if not files:
        raise FileNotFoundError(f"no LoCoMo conversations (*.json) in {data_dir}")
    return [parse_conversation(f.stem, json.loads(f.read_text(encoding="utf-8"))) for f in files]


# ------------------------------------------------------------------------------- the pipeline
def import_conversation(store: Any, conversation: LocomoConversation) -> int:
    """Write the conversation's turns as memories of its tenant (idempotent by dia_id)."""
    for turn in conversation.turns:
        store.create_memory_log(
            conversation.user_id, PROJECT_ID, turn.raw_data, external_id=turn.dia_id
        )
    return len(conversation.turns)


def exact_dense_rankings(
    store: Any, conversation: LocomoConversation, query_vectors: np.ndarray, k: int
) -> list[list[str]]:
    """Top-k dia_ids per query by brute-force cosine over the tenant's stored vectors."""
    from memory_pipeline.tenancy import Tenant

    tenant = Tenant(conversation.user_id, PROJECT_ID)
    with store.db.connection() as conn:
        rows = conn.execute(
            """SELECT m.external_id, v.embedding
               FROM memory_vector v JOIN memory_log m ON m.id = v.log_id
               WHERE v.tenant_key = %s AND v.embedding_model = %s AND m.status = 'embedded'""",
            (tenant.key, store.embedder.model_id),
        ).fetchall()
    ids = [r["external_id"] for r in rows]
    matrix = np.asarray([np.asarray(r["embedding"].to_numpy(), dtype=np.float32) for r in rows])
    sims = query_vectors @ matrix.T
    rankings: list[list[str]] = []
    for row in sims:
        ranked: list[str] = []
        for index in np.argsort(-row, kind="stable"):
            if ids[index] not in ranked:  # a memory's chunks count once
                ranked.append(ids[index])
            if len(ranked) == k:
                break
        rankings.append(ranked)
    return rankings


def score_rankings(
    conversations: Sequence[LocomoConversation],
    rank: Callable[[LocomoConversation, list[str]], Sequence[Sequence[str]]],
    ks: Sequence[int] = KS,
) -> CategoryScores:
    """Recall@k per category of ``rank(conversation, questions)`` (dia_ids per question)."""
    scores = CategoryScores(tuple(ks))
    for conversation in conversations:
        questions = [q.question for q in conversation.questions]
        if not questions:
            continue
        for q, ranked in zip(conversation.questions, rank(conversation, questions), strict=True):
            scores.add(q.category, q.evidence, list(ranked))
    return scores


def score_searches(
    search: Any,
    conversations: Sequence[LocomoConversation],
    mode: str,
    *,
    backend: str | None = None,
    ks: Sequence[int] = KS,
) -> CategoryScores:
    """Recall@k per category of ``search.search_many`` (a store or a ``MemorySearch``)."""

    def rank(conversation: LocomoConversation, questions: list[str]) -> list[list[str]]:
        results = search.search_many(
            questions, conversation.user_id, PROJECT_ID, max(ks), mode=mode, backend=backend
        )
        return [[h.external_id for h in hits] for hits in results]

    return score_rankings(conversations, rank, ks)


def score_exact_dense(
    store: Any, conversations: Sequence[LocomoConversation], ks: Sequence[int] = KS
) -> CategoryScores:
    """Recall@k per category of brute-force cosine over the tenant's stored vectors."""

    def rank(conversation: LocomoConversation, questions: list[str]) -> list[list[str]]:
        vectors = store.embedder.embed_batch(questions)
        return exact_dense_rankings(store, conversation, vectors, max(ks))

    return score_rankings(conversations, rank, ks)


def default_stronger_model() -> str | None:
    """all-mpnet-base-v2 when the ``mpnet`` extra is installed (``make`` installs it)."""
    from memory_pipeline.embedding.model_source import part_paths
    from memory_pipeline.evaluation.stronger_model import MPNET

    try:
        part_paths()
    except RuntimeError as missing:
        print(f"no stronger model scored: {missing}", file=sys.stderr)
        return None
    return MPNET


def main(argv: Sequence[str] | None = None) -> int:
    """Import, process and evaluate; print the recall tables. Returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m memory_pipeline.evaluation.locomo",
        description="Recall@5/10 per LoCoMo category on the dev conversations; hybrid's "
        "parameters chosen by leave-one-conversation-out (the default's figure is held-out).",
    )
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--backend", choices=("auto", "chroma", "pgvector"), default=None)
    parser.add_argument(
        "--encoder-backends",
        default=",".join(EMBEDDING_BACKENDS),
        help="comma-separated encoder backends rolled out and compared (empty: none)",
    )
    parser.add_argument(
        "--stronger-model",
        default=None,
        help="a stronger model scored as a second stage and as the only model (default: "
        "all-mpnet-base-v2 when the 'mpnet' extra is installed; empty: none)",
    )
    parser.add_argument(
        "--stronger-encoder-backends",
        default="onnx-int8,openvino-int8",
        help="comma-separated encoder backends rolled out for the stronger model (empty: none)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document instead")
    parser.add_argument(
        "--no-results-file", action="store_true", help="do not write a results file"
    )
    args = parser.parse_args(argv)

    # The evaluation keeps its own home (own database and Chroma) unless one is configured.
    os.environ.setdefault("MEMORY_PIPELINE_HOME", str(DEFAULT_EVAL_HOME))
    from memory_pipeline.evaluation.runner import evaluate_and_report

    return evaluate_and_report(
        load_conversations(args.data_dir),
        backend=args.backend,
        encoder_backends=[b for b in args.encoder_backends.split(",") if b],
        stronger_encoder_backends=[b for b in args.stronger_encoder_backends.split(",") if b],
        stronger_model=default_stronger_model()
        if args.stronger_model is None
        else (args.stronger_model or None),
        as_json=args.json,
        write_results=not args.no_results_file,
    )


if __name__ == "__main__":
    sys.exit(main())
