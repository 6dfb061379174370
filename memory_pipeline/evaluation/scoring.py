"""Recall@k of ranked memories against evidence, per question category and in total."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

#: LoCoMo's question categories (its ``category`` codes), for reporting only: no ranking rule
#: knows them.
CATEGORY_NAMES: dict[int, str] = {
    1: "multi-hop",
    2: "temporal",
    3: "open-domain",
    4: "single-hop",
    5: "adversarial",
}
#: Rows of the printed tables, in the order of the issue's table.
CATEGORY_ORDER: tuple[int, ...] = (4, 5, 2, 1, 3)
ALL = "all"


def recall_at_k(evidence: Sequence[str], ranked: Sequence[str | None], k: int) -> float:
    """|evidence ∩ top-k| / |evidence|."""
    top = set(ranked[:k])
    return sum(1 for e in evidence if e in top) / len(evidence)


def category_name(category: int | None) -> str:
    return CATEGORY_NAMES.get(category, f"category {category}") if category else "uncategorised"


@dataclass
class CategoryScores:
    """Recall sums per k, in total and per question category."""

    ks: tuple[int, ...]
    sums: dict[str, dict[int, float]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def add(
        self, category: int | None, evidence: Sequence[str], ranked: Sequence[str | None]
    ) -> None:
        for group in (ALL, category_name(category)):
            sums = self.sums.setdefault(group, dict.fromkeys(self.ks, 0.0))
            for k in self.ks:
                sums[k] += recall_at_k(evidence, ranked, k)
            self.counts[group] = self.counts.get(group, 0) + 1

    def mean(self, k: int, group: str = ALL) -> float:
        n = self.counts.get(group, 0)
        return self.sums[group][k] / n if n else 0.0

    def groups(self) -> list[str]:
        """``all``, then the categories present, in :data:`CATEGORY_ORDER`."""
        named = [category_name(c) for c in CATEGORY_ORDER]
        present = [g for g in named if g in self.counts]
        others = sorted(g for g in self.counts if g not in named and g != ALL)
        return [ALL, *present, *others]

    def to_json(self) -> dict[str, dict[str, float | int]]:
        return {
            g: {"questions": self.counts[g], **{f"recall@{k}": self.mean(k, g) for k in self.ks}}
            for g in self.groups()
        }


def format_category_table(rows: Mapping[str, CategoryScores], k: int) -> str:
    """One row per method, one column per category (recall@k), totals first."""
    groups: list[str] = []
    for scores in rows.values():
        groups += [g for g in scores.groups() if g not in groups]
    width = max(len(name) for name in rows) + 2
    header = f"{f'recall@{k}':<{width}}" + "".join(f"{g:>13}" for g in groups)
    counts = next(iter(rows.values())).counts if rows else {}
    lines = [
        header,
        f"{'(questions)':<{width}}" + "".join(f"{counts.get(g, 0):>13d}" for g in groups),
        "-" * len(header),
    ]
    for name, scores in rows.items():
        cells = "".join(
            f"{scores.mean(k, g):>13.3f}" if g in scores.counts else f"{'—':>13}" for g in groups
        )
        lines.append(f"{name:<{width}}{cells}")
    return "\n".join(lines)


def mean_of(values: Iterable[float]) -> float:
    items = list(values)
    return sum(items) / len(items) if items else 0.0
