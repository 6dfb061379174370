"""``make eval``: LoCoMo dev recall per category, ranking's parameters chosen leave-one-out.

The exact dense baseline is numpy over the stored vectors; the vector and keyword rows and the
default's held-out row are searched through the product (``search_many``). The default is
held-out: each conversation searched with the ranking parameters that did best on the other
four (:mod:`.loo`), chosen in stages (base grid, then each technique's weight, :mod:`.tuning`).
Each technique's held-out effect *alone* is the same procedure with only that stage, ranked
with the product's ranking code on cached retrieval (:class:`~.tuning.GridScorer`). Settings
that put an answer first for fewer than :data:`MIN_SEED_HITS` of the seed work-log questions
are never chosen. The product's defaults are what the same choice makes on all five
conversations; the run says whether they agree.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from memory_pipeline.evaluation.locomo import (
    KS,
    PROJECT_ID,
    LocomoConversation,
    import_conversation,
    score_exact_dense,
    score_rankings,
    score_searches,
)
from memory_pipeline.evaluation.loo import Split, choose_in_stages, leave_one_out_in_stages
from memory_pipeline.evaluation.scoring import CategoryScores, format_category_table
from memory_pipeline.evaluation.seed_questions import (
    SEED_QUESTIONS,
    SEED_TENANT,
    find_work_logs,
    import_work_logs,
)
from memory_pipeline.evaluation.stronger_model import (
    choose_second_stage,
    rescorable,
    second_stage_folds,
    staged_held_out_searches,
    write_second_stage,
)
from memory_pipeline.evaluation.tuning import (
    TECHNIQUES,
    CachedQuestions,
    GridScorer,
    K,
    describe,
    ranking_grid,
    retrieve_conversation,
    retrieve_questions,
    technique_stage,
)
from memory_pipeline.search.ranking import RankingParams
from memory_pipeline.search.searcher import DEFAULT_PARAMS, MemorySearch
from memory_pipeline.tenancy import Tenant

HELD_OUT = "hybrid (default, held-out)"
#: A setting is chosen only if the seed work-log questions keep at least this many hits@1.
MIN_SEED_HITS = 14
_STARTED = time.monotonic()

Stage = Callable[[RankingParams], list[RankingParams]]


def progress(message: str) -> None:
    """A progress line on stderr (stdout keeps the tables or the JSON document)."""
    print(f"[eval {time.monotonic() - _STARTED:6.0f}s] {message}", file=sys.stderr, flush=True)


def held_out_scores(
    store: Any,
    conversations: Sequence[LocomoConversation],
    chosen: dict[str, RankingParams],
    *,
    backend: str | None = None,
) -> CategoryScores:
    """Each conversation searched (hybrid) with the parameters chosen without it."""

    def rank(conversation: LocomoConversation, questions: list[str]) -> list[list[str]]:
        search = MemorySearch(
            store.db, store.search.store, store.embedder, params=chosen[conversation.name]
        )
        results = search.search_many(
            questions, conversation.user_id, PROJECT_ID, max(KS), mode="hybrid", backend=backend
        )
        return [[h.external_id for h in hits] for hits in results]

    return score_rankings(conversations, rank)


def cached_held_out(
    scorer: GridScorer, conversations: Sequence[LocomoConversation], folds: Sequence[Split]
) -> CategoryScores:
    """Recall@10 per category of each held-out conversation under its fold's choice (ranking
    parameters, or staged settings with a second stage)."""
    scores = CategoryScores((10,))
    by_name = {c.name: c for c in conversations}
    for fold in folds:
        conversation = by_name[fold.held_out]
        cached = next(c for c in scorer.cached if c.name == fold.held_out)
        rankings = cached.ranked(fold.chosen, scorer.now)
        for q, ranked in zip(conversation.questions, rankings, strict=True):
            scores.add(q.category, q.evidence, ranked)
    return scores


def retrieve_seed(store: Any, grid: Sequence[RankingParams]) -> CachedQuestions | None:
    """The seed work-log questions retrieved once (``None`` when the seed memories are absent)."""
    folder = find_work_logs()
    if folder is None:
        return None
    import_work_logs(store, SEED_TENANT.user_id, SEED_TENANT.project_id, folder)
    return retrieve_questions(
        store.search,
        store,
        "seed",
        SEED_TENANT,
        [(q.question, q.answers) for q in SEED_QUESTIONS],
        grid,
    )


def encoder_backend_rows(
    store: Any,
    conversations: Sequence[LocomoConversation],
    folds: Sequence[Split],
    backends: Sequence[str],
    configured: CategoryScores,
    *,
    backend: str | None = None,
) -> dict[str, dict[str, Any]]:
    """Each encoder backend other than the store's rolled out on the conversations' tenants
    (re-embedded aside and switched, as a configuration change does), then the default's
    held-out recall@10 with the folds' ranking choices; the configured backend is rolled back
    at the end.

    Per backend: recall, re-embedding rows/s through the pipeline, and the cosine of its
    question vectors to torch float32's.
    """
    from memory_pipeline.embedding import Embedder

    chosen = {f.held_out: f.chosen for f in folds}
    backends = [b for b in backends if b != store.embedder.backend]
    settings = store.settings
    questions = [q.question for c in conversations for q in c.questions]
    reference = Embedder(
        settings.embedding_model, model_source=store.embedder.model_source, precision="float32"
    ).embed_batch(questions)
    cosines = (store.embedder.embed_batch(questions) * reference).sum(axis=1)
    out: dict[str, dict[str, Any]] = {
        store.embedder.backend: {
            "precision": str(store.embedder.precision),
            "held_out_recall@10": configured.mean(10),
            "reembed_rows_per_s": None,
            "question_cosine_mean": float(cosines.mean()),
            "question_cosine_min": float(cosines.min()),
        }
    }
    for name in backends:
        try:
            out[name] = _backend_row(
                store, conversations, chosen, name, questions, reference, backend
            )
        except Exception as exc:  # an export this model does not support: say so, go on
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}
        progress(f"encoder backend {name}: {out[name]}")
    started, rows = time.perf_counter(), 0
    for c in conversations:  # back to the configured backend, timed like the others
        counts = store.process_pending(c.user_id, PROJECT_ID)
        rows += counts.get("reembedded", 0) + counts.get("embedded", 0)
    if rows:
        out[store.embedder.backend]["reembed_rows_per_s"] = rows / (time.perf_counter() - started)
    return out


@dataclass
class FirstStage:
    """The first stage's leave-one-out choice on one store: the scorer over cached retrieval,
    the admissible grid, each variant's held-out figure, the folds and the all-five choice."""

    scorer: GridScorer
    full_grid: list[RankingParams]
    grid: list[RankingParams]
    alone: dict[str, CategoryScores]
    folds: list[Split]
    on_all: RankingParams


def choose_first_stage(
    store: Any, conversations: Sequence[LocomoConversation], *, variants: bool = True
) -> FirstStage:
    """Retrieve once, then choose hybrid's parameters leave-one-out in stages (base grid, then
    each technique); ``variants`` also scores each technique alone and each fusion alone."""
    names = [c.name for c in conversations]
    full_grid = ranking_grid(DEFAULT_PARAMS)
    cached = [retrieve_conversation(store.search, store, c, full_grid) for c in conversations]
    scorer = GridScorer(cached, retrieve_seed(store, full_grid))
    grid = [p for p in full_grid if scorer.admissible(p, MIN_SEED_HITS)]
    progress(f"retrieved once; {len(grid)} of {len(full_grid)} settings keep the seed")

    stages = {
        name: technique_stage(scorer, field, MIN_SEED_HITS) for name, field in TECHNIQUES.items()
    }
    every: dict[str, tuple[Sequence[RankingParams], list[Stage]]] = {
        "base + every technique": (grid, list(stages.values()))
    }
    if variants:
        every = {
            "base grid": (grid, []),
            "min-max fusion only": ([p for p in grid if p.fusion == "minmax"], []),
            "reciprocal-rank fusion only": ([p for p in grid if p.fusion == "rrf"], []),
            **{f"base + {name}": (grid, [stage]) for name, stage in stages.items()},
            **every,
        }
    alone: dict[str, CategoryScores] = {}
    choices: dict[str, list[Split]] = {}
    for label, (first, then) in every.items():
        if not first:
            continue
        choices[label] = leave_one_out_in_stages(scorer.score, names, first, then)
        alone[f"{label} (held-out)"] = cached_held_out(scorer, conversations, choices[label])
        progress(f"leave-one-out: {label}")
    on_all = choose_in_stages(scorer.score, names, grid, list(stages.values()))
    return FirstStage(scorer, full_grid, grid, alone, choices["base + every technique"], on_all)


def _short(model: str) -> str:
    return model.rsplit("/", 1)[-1]


def second_stage_row(
    store: Any,
    model: str,
    conversations: Sequence[LocomoConversation],
    first: FirstStage,
    tenants: Sequence[Tenant],
    rows: dict[str, CategoryScores],
    label: str,
    *,
    backend: str | None = None,
) -> dict[str, Any]:
    """``model`` as the second stage over ``store``'s first stage (``first``'s choices): its
    vectors written by the pipeline, depth and weight chosen leave-one-out on each fold's first
    stage, the held-out row searched through the product and added to ``rows`` as ``label``."""
    from memory_pipeline.memory_store import MemoryStore

    settings = store.settings.with_overrides(rerank_model=model)
    with MemoryStore(settings, store.endpoints, embedder=store.embedder, migrate=False) as staged:
        second = staged.search.second_stage
        vectors, seconds = write_second_stage(staged, tenants, second.model_id)
        progress(f"second stage: {vectors} {model} vectors written in {seconds:.0f} s")
        firsts = list(dict.fromkeys([*(f.chosen for f in first.folds), first.on_all]))
        search = staged.search
        scorer = GridScorer(
            [rescorable(search, staged, c, second, firsts) for c in first.scorer.cached],
            rescorable(search, staged, first.scorer.seed, second, firsts)
            if first.scorer.seed is not None
            else None,
        )
        folds = second_stage_folds(scorer, first.folds, MIN_SEED_HITS)
        on_all = choose_second_stage(
            scorer, [c.name for c in conversations], first.on_all, MIN_SEED_HITS
        )
        cached = cached_held_out(scorer, conversations, folds)
        rows[label] = staged_held_out_searches(
            staged, second, conversations, {f.held_out: f.chosen for f in folds}, backend=backend
        )
        progress(f"leave-one-out: {label} ({rows[label].mean(10):.3f})")
    return {
        "model": model,
        "vectors_written": vectors,
        "write_s": seconds,
        "folds": [{"held_out": f.held_out, "chosen": f.chosen.describe()} for f in folds],
        "chosen_on_all_five": on_all.describe(),
        "depth": on_all.depth,
        "weight": on_all.weight,
        "seed_hits_at_1": scorer.seed_hits(on_all),
        "cached_held_out_recall@10": cached.mean(K),
        "held_out": rows[label].to_json(),
    }


def stronger_model_rows(
    store: Any,
    conversations: Sequence[LocomoConversation],
    first: FirstStage,
    model: str,
    rows: dict[str, CategoryScores],
    *,
    encoder_backends: Sequence[str] = (),
    backend: str | None = None,
) -> dict[str, Any]:
    """``model`` as a second stage over the chosen first stage, then as the tenants' only model
    (rolled out and back, with each of ``encoder_backends`` rolled out too); each held-out row
    searched through the product is added to ``rows``.
    """
    from memory_pipeline.memory_store import MemoryStore

    tenants = [Tenant(c.user_id, PROJECT_ID) for c in conversations]
    if first.scorer.seed is not None:
        tenants.append(SEED_TENANT)
    out: dict[str, Any] = {"model": model}

    label = f"hybrid + {_short(model)} second stage (held-out)"
    out["second_stage"] = second_stage_row(
        store, model, conversations, first, tenants, rows, label, backend=backend
    )

    settings = store.settings.with_overrides(embedding_model=model, rerank_model=None)
    with MemoryStore(settings, store.endpoints, migrate=False) as only:
        only.ensure_model_index()
        started = time.perf_counter()
        for t in tenants:
            only.process_pending(t.user_id, t.project_id)
        seconds = time.perf_counter() - started
        progress(f"{model} rolled out as the only model in {seconds:.0f} s")
        alone = choose_first_stage(only, conversations, variants=False)
        label = f"{_short(model)} as the model, hybrid (held-out)"
        rows[label] = held_out_scores(
            only, conversations, {f.held_out: f.chosen for f in alone.folds}, backend=backend
        )
        progress(f"leave-one-out: {model} as the model ({rows[label].mean(10):.3f})")
        out["only_model"] = {
            "rollout_s": seconds,
            "folds": [{"held_out": f.held_out, "chosen": describe(f.chosen)} for f in alone.folds],
            "chosen_on_all_five": describe(alone.on_all),
            "seed_hits_at_1": alone.scorer.seed_hits(alone.on_all),
            "held_out": rows[label].to_json(),
        }
        # both models together: mpnet's first stage re-scored by the configured model
        minilm = store.settings.embedding_model
        out["only_model_second_stage"] = second_stage_row(
            only,
            minilm,
            conversations,
            alone,
            tenants,
            rows,
            f"{_short(model)} + {_short(minilm)} second stage (held-out)",
            backend=backend,
        )
        if encoder_backends:
            out["only_model"]["encoder_backends"] = encoder_backend_rows(
                only, conversations, alone.folds, encoder_backends, rows[label], backend=backend
            )
    # sentence vectors (0205) under each model: rolled out, chosen and searched like a model
    for name in (store.settings.embedding_model, model):
        out[f"sentence_vectors_{_short(name)}"] = rolled_out_model_row(
            store,
            conversations,
            tenants,
            rows,
            f"{_short(name)} + sentence vectors as the model, hybrid (held-out)",
            backend=backend,
            embedding_model=name,
            sentence_vectors=True,
            rerank_model=None,
        )
    for t in tenants:  # back to the configured model
        store.process_pending(t.user_id, t.project_id)
    return out


def rolled_out_model_row(
    store: Any,
    conversations: Sequence[LocomoConversation],
    tenants: Sequence[Tenant],
    rows: dict[str, CategoryScores],
    label: str,
    *,
    backend: str | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """The tenants rolled out to the model ``overrides`` configure (re-embedded by the
    pipeline), the first stage chosen leave-one-out on it, the held-out row searched through the
    product and added to ``rows`` as ``label``."""
    from memory_pipeline.memory_store import MemoryStore

    settings = store.settings.with_overrides(**overrides)
    with MemoryStore(settings, store.endpoints, migrate=False) as other:
        other.ensure_model_index()
        vectors, seconds = write_second_stage(other, tenants, other.embedder.model_id)
        progress(f"{other.embedder.model_id} rolled out in {seconds:.0f} s ({vectors} vectors)")
        chosen = choose_first_stage(other, conversations, variants=False)
        rows[label] = held_out_scores(
            other, conversations, {f.held_out: f.chosen for f in chosen.folds}, backend=backend
        )
        progress(f"leave-one-out: {label} ({rows[label].mean(10):.3f})")
        return {
            "model_id": other.embedder.model_id,
            "rollout_s": seconds,
            "vectors": vectors,
            "folds": [{"held_out": f.held_out, "chosen": describe(f.chosen)} for f in chosen.folds],
            "chosen_on_all_five": describe(chosen.on_all),
            "seed_hits_at_1": chosen.scorer.seed_hits(chosen.on_all),
            "held_out": rows[label].to_json(),
        }


def _backend_row(
    store: Any,
    conversations: Sequence[LocomoConversation],
    chosen: dict[str, RankingParams],
    name: str,
    questions: list[str],
    reference: Any,
    backend: str | None,
) -> dict[str, Any]:
    """Encoder backend ``name`` rolled out on the conversations' tenants and scored."""
    from memory_pipeline.embedding import load_embedder
    from memory_pipeline.memory_store import MemoryStore

    settings = store.settings
    embedder = load_embedder(
        settings.embedding_model,
        batch_size=settings.embedding_batch_size,
        precision=settings.embedding_precision,
        trace_queries=settings.query_trace,
        backend=name,
        exports_dir=settings.models_dir,
        sentence_vectors=settings.sentence_vectors,
    )
    with MemoryStore(settings, store.endpoints, embedder=embedder, migrate=False) as backend_store:
        backend_store.ensure_model_index()
        started, rows = time.perf_counter(), 0
        for c in conversations:
            counts = backend_store.process_pending(c.user_id, PROJECT_ID)
            rows += counts.get("reembedded", 0) + counts.get("embedded", 0)
        seconds = time.perf_counter() - started
        held = held_out_scores(backend_store, conversations, chosen, backend=backend)
        cosines = (embedder.embed_batch(questions) * reference).sum(axis=1)
    return {
        "held_out_recall@10": held.mean(10),
        "reembed_rows_per_s": rows / seconds if rows else None,
        "question_cosine_mean": float(cosines.mean()),
        "question_cosine_min": float(cosines.min()),
    }


def evaluate_and_report(
    conversations: Sequence[LocomoConversation],
    *,
    backend: str | None = None,
    encoder_backends: Sequence[str] = (),
    stronger_model: str | None = None,
    stronger_encoder_backends: Sequence[str] = (),
    as_json: bool = False,
    write_results: bool = True,
) -> int:
    """Import and process the conversations, evaluate, print; returns the exit code."""
    from memory_pipeline.memory_store import MemoryStore

    started = time.perf_counter()
    names = [c.name for c in conversations]
    with MemoryStore.from_env() as store:
        t0 = time.perf_counter()
        turns = sum(import_conversation(store, c) for c in conversations)
        counts: dict[str, int] = {}
        for c in conversations:
            for key, value in store.process_pending(c.user_id, PROJECT_ID).items():
                counts[key] = counts.get(key, 0) + value
        t1 = time.perf_counter()
        progress(f"{turns} memories imported and processed")

        rows: dict[str, CategoryScores] = {
            "exact dense baseline": score_exact_dense(store, conversations),
            "vector": score_searches(store, conversations, "vector", backend=backend),
            "keyword": score_searches(store, conversations, "keyword", backend=backend),
        }
        progress("exact dense, vector and keyword rows measured")
        first = choose_first_stage(store, conversations)
        rows["hybrid, shipped parameters (in-sample)"] = score_searches(
            store, conversations, "hybrid", backend=backend
        )
        rows[HELD_OUT] = held_out_scores(
            store, conversations, {f.held_out: f.chosen for f in first.folds}, backend=backend
        )
        t2 = time.perf_counter()
        progress("held-out searches done")
        store_backend = store.embedder.backend
        backend_rows = (
            encoder_backend_rows(
                store, conversations, first.folds, encoder_backends, rows[HELD_OUT], backend=backend
            )
            if encoder_backends
            else {}
        )
        stronger = (
            stronger_model_rows(
                store,
                conversations,
                first,
                stronger_model,
                rows,
                encoder_backends=stronger_encoder_backends,
                backend=backend,
            )
            if stronger_model
            else {}
        )

    timing = {"import_and_process_s": t1 - t0, "search_s": t2 - t1, "total_s": t2 - started}
    shipped_hits = first.scorer.seed_hits(DEFAULT_PARAMS)
    document = {
        "conversations": names,
        "memories": turns,
        "questions": sum(len(c.questions) for c in conversations),
        "skipped_questions": sum(c.skipped_questions for c in conversations),
        "process_counts": counts,
        "recall": {name: s.to_json() for name, s in rows.items()},
        "techniques_held_out_recall@10": {name: s.to_json() for name, s in first.alone.items()},
        "folds": [{"held_out": f.held_out, "chosen": describe(f.chosen)} for f in first.folds],
        "chosen_on_all_five": describe(first.on_all),
        "shipped": describe(DEFAULT_PARAMS),
        "shipped_is_the_all_five_choice": first.on_all == DEFAULT_PARAMS,
        "grid_size": len(first.full_grid),
        "admissible_settings": len(first.grid),
        "seed_hits_at_1": {
            "shipped": shipped_hits,
            "of": len(SEED_QUESTIONS),
            "minimum": MIN_SEED_HITS,
        },
        "timing": timing,
        "encoder_backends": backend_rows,
        "stronger_model": stronger,
    }
    if write_results:
        document["results_file"] = _write_results_file(document, rows, first.alone)
    if as_json:
        print(json.dumps(document))
        return 0
    print(
        f"LoCoMo dev: {len(conversations)} conversations, {turns} memories, "
        f"{document['questions']} questions ({document['skipped_questions']} without evidence "
        f"skipped); processing: {counts}"
    )
    for k in sorted(KS, reverse=True):
        print()
        print(format_category_table(rows, k))
    print()
    print("each technique alone, leave-one-out (ranked on cached retrieval):")
    print(format_category_table(first.alone, 10))
    print()
    print(
        f"leave-one-conversation-out over {len(first.grid)} base settings "
        f"(of {len(first.full_grid)}; the others put an answer first for fewer than {MIN_SEED_HITS} of the "
        f"{len(SEED_QUESTIONS)} seed work-log questions), then each technique; recall@10 chooses:"
    )
    for f in first.folds:
        print(f"  without {f.held_out}: {describe(f.chosen)}")
    print(f"chosen on all five: {describe(first.on_all)}")
    agree = "the same" if first.on_all == DEFAULT_PARAMS else "DIFFERENT: update the defaults"
    print(f"shipped defaults:   {describe(DEFAULT_PARAMS)} ({agree})")
    print(f"seed work-log questions, hit@1 with the shipped defaults: {shipped_hits}/16")
    held = rows[HELD_OUT]
    print(f"default (held-out): recall@10 {held.mean(10):.3f}, recall@5 {held.mean(5):.3f}")
    if backend_rows:
        print()
        print(backend_table(backend_rows, store_backend))
    if stronger:
        print()
        print(stronger_summary(stronger))
    print(
        f"time: import+process {timing['import_and_process_s']:.1f} s, "
        f"searches {timing['search_s']:.1f} s, total {timing['total_s']:.1f} s"
    )
    if write_results and document.get("results_file"):
        print(f"results: {document['results_file']}")
    return 0


def backend_table(backend_rows: dict[str, dict[str, float | None]], configured: str) -> str:
    """The encoder backends' figures as a markdown table."""
    lines = [
        f"encoder backends, each rolled out on the five tenants ({configured} configured):",
        "| backend | held-out recall@10 | re-embed rows/s | question cosine to fp32 (mean / min) |",
        "|---|---|---|---|",
    ]
    for name, f in backend_rows.items():
        if "error" in f:
            lines.append(f"| {name} | failed: {f['error']} | | |")
            continue
        lines.append(
            f"| {name} | {f['held_out_recall@10']:.3f} | {f['reembed_rows_per_s'] or 0:.1f} | "
            f"{f['question_cosine_mean']:.4f} / {f['question_cosine_min']:.4f} |"
        )
    return "\n".join(lines)


def stronger_summary(stronger: dict[str, Any]) -> str:
    """The stronger model's choices, for the printed report (its recall rows are in the
    tables)."""
    from memory_pipeline.settings import Settings

    second, only = stronger["second_stage"], stronger["only_model"]
    shipped = (
        Settings.model_fields["rerank_depth"].default,
        Settings.model_fields["rerank_weight"].default,
    )
    agree = (
        "the same" if (second["depth"], second["weight"]) == shipped else "DIFFERENT: update them"
    )
    lines = [
        f"{stronger['model']} as a second stage ({second['vectors_written']} vectors written in "
        f"{second['write_s']:.0f} s), chosen leave-one-out on each fold's first stage:",
        *(f"  without {f['held_out']}: {f['chosen']}" for f in second["folds"]),
        f"chosen on all five: {second['chosen_on_all_five']}",
        f"shipped MEMORY_PIPELINE_RERANK_DEPTH/WEIGHT: {shipped[0]}/{shipped[1]:g} ({agree})",
        f"seed work-log questions, hit@1 with it: {second['seed_hits_at_1']}/16",
        f"{stronger['model']} as the only model (rolled out in {only['rollout_s']:.0f} s):",
        *(f"  without {f['held_out']}: {f['chosen']}" for f in only["folds"]),
        f"chosen on all five: {only['chosen_on_all_five']}; seed hit@1 {only['seed_hits_at_1']}/16",
    ]
    both = stronger.get("only_model_second_stage")
    if both:
        lines += [
            f"{stronger['model']} as the model, {both['model']} as its second stage:",
            *(f"  without {f['held_out']}: {f['chosen']}" for f in both["folds"]),
            f"chosen on all five: {both['chosen_on_all_five']}; "
            f"seed hit@1 {both['seed_hits_at_1']}/16",
        ]
    for key, row in stronger.items():
        if key.startswith("sentence_vectors_"):
            lines += [
                f"{row['model_id']} ({row['vectors']} vectors, rolled out in "
                f"{row['rollout_s']:.0f} s):",
                *(f"  without {f['held_out']}: {f['chosen']}" for f in row["folds"]),
                f"chosen on all five: {row['chosen_on_all_five']}; "
                f"seed hit@1 {row['seed_hits_at_1']}/16",
            ]
    if only.get("encoder_backends"):
        lines += ["", backend_table(only["encoder_backends"], "torch")]
    return "\n".join(lines)


def mpnet_label(document: dict[str, Any]) -> str:
    return _short(document.get("stronger_model", {}).get("model", ""))


def _write_results_file(
    document: dict[str, Any], rows: dict[str, CategoryScores], alone: dict[str, CategoryScores]
) -> str | None:
    """The run as a results file beside the bench's (only in a source checkout)."""
    try:
        from memory_pipeline_bench.results import (
            RESULTS_DIR,
            SectionResult,
            cpu_description,
            results_file_name,
            write_json,
        )
    except ImportError:  # an installed wheel has no benches
        return None
    section = SectionResult("eval")
    held = rows[HELD_OUT]
    section.add("LoCoMo dev hybrid recall@10 (held-out)", held.mean(10), "", at_least=0.80)
    for group in held.groups():
        for k in sorted(KS):
            section.add(f"  {group} recall@{k} (held-out)", held.mean(k, group), "")
    for name, scores in alone.items():
        section.add(f"  {name} recall@10", scores.mean(10), "")
    for name, scores in rows.items():
        if name != HELD_OUT and name.endswith("(held-out)"):  # the stronger model's rows
            section.add(f"  {name} recall@10", scores.mean(10), "")
    for name, figures in document.get("encoder_backends", {}).items():
        if "error" not in figures:
            section.add(
                f"  encoder {name}: recall@10 (held-out)", figures["held_out_recall@10"], ""
            )
    mpnet = document.get("stronger_model", {}).get("only_model", {})
    for name, figures in mpnet.get("encoder_backends", {}).items():
        if "error" not in figures:
            section.add(
                f"  {mpnet_label(document)} encoder {name}: recall@10 (held-out)",
                figures["held_out_recall@10"],
                "",
            )
    section.details = document
    cpu = cpu_description()
    started = datetime.now(UTC)
    path = RESULTS_DIR / results_file_name(cpu, started).replace(".json", "_eval.json")
    write_json(path, [section], {"started": started.isoformat(), "cpu": cpu, "eval": True})
    return str(path)
