"""Encoder backends: the same model run by torch, ONNX Runtime or OpenVINO (fp32 or int8).

A backend other than ``torch`` is part of the model's identity (:func:`model_id_for`): its
vectors differ slightly from torch's, so a tenant never mixes them and a backend change rolls
out like a model change (docs/decisions/0152-encoder-backends.md).

The model is exported once per home from its local folder (no hub): the whole
sentence-embedding forward (transformer, pooling, normalisation) as one ONNX graph, quantised
or compiled from there. An export is written to a temporary folder and renamed into place, so
two processes exporting at once both end with one complete copy.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NamedTuple

import numpy as np

from memory_pipeline.embedding.sentences import SENTENCE_VECTORS_SUFFIX
from memory_pipeline.settings import EMBEDDING_BACKENDS

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

#: Separates a model name from its backend in a model id (``name@onnx-int8``).
BACKEND_SEPARATOR: Final = "@"
#: Bumped when the export format changes, so old exports are not reused.
EXPORT_FORMAT: Final = 1
#: Inputs the exported graph takes, in this order, where the tokenizer produces them.
INPUT_NAMES: Final = ("input_ids", "attention_mask", "token_type_ids")
#: Least cosine to torch float32 each backend keeps on ordinary texts (the test's fixed set;
#: degenerate texts, one word repeated hundreds of times, fall lower under int8).
MIN_COSINE: Final = {
    "torch": 0.99,
    "onnx": 0.9999,
    "openvino": 0.999,
    "onnx-int8": 0.85,
    "openvino-int8": 0.9,
}
#: Texts that calibrate the static int8 quantisation of OpenVINO (activation ranges).
CALIBRATION_TEXTS: Final = (
    "Summary: fixed the nightly import that dropped rows. Root cause: a retry reused a closed "
    "cursor. Lesson: open the cursor inside the retry.",
    "Caroline: I went to the LGBTQ support group yesterday and it was so powerful.",
    "what broke the nightly import",
    "who fixed the flaky deploy last week",
    "Melanie: We painted a sunset by the lake with the kids on Saturday, 8 May 2023.",
    "notes on pgvector hnsw iterative scan and filtered queries",
    "Gotcha: chromadb batches above 5461 vectors are refused; split the upsert.",
    "Task: move settings onto pydantic-settings. Files touched: settings.py, README.md.",
    "When did Jon open his dance studio?",
    "The embedding batcher chunks texts over 256 word pieces with a 32-token overlap so a "
    "sentence cut at a chunk edge is still whole in one of them, and records the cut.",
    "x",
    "Architecture decision: one Chroma collection per tenant, swapped in when rebuilt.",
)


def model_id_for(model_name: str, backend: str, sentence_vectors: bool = False) -> str:
    """The model id recorded on rows and collections: the name, plus the backend unless torch,
    plus :data:`SENTENCE_VECTORS_SUFFIX` when texts also get sentence vectors."""
    check_backend(backend)
    model_id = model_name if backend == "torch" else f"{model_name}{BACKEND_SEPARATOR}{backend}"
    return model_id + SENTENCE_VECTORS_SUFFIX if sentence_vectors else model_id


class ModelIdParts(NamedTuple):
    """What a recorded model id names (the arguments of :func:`model_id_for`)."""

    name: str
    backend: str
    sentence_vectors: bool


def split_model_id(model_id: str) -> ModelIdParts:
    """The parts of a recorded model id (the inverse of :func:`model_id_for`)."""
    sentence_vectors = model_id.endswith(SENTENCE_VECTORS_SUFFIX)
    if sentence_vectors:
        model_id = model_id[: -len(SENTENCE_VECTORS_SUFFIX)]
    name, sep, backend = model_id.rpartition(BACKEND_SEPARATOR)
    if sep and backend in EMBEDDING_BACKENDS and backend != "torch":
        return ModelIdParts(name, backend, sentence_vectors)
    return ModelIdParts(model_id, "torch", sentence_vectors)


def check_backend(backend: str) -> None:
    if backend not in EMBEDDING_BACKENDS:
        raise ValueError(f"unknown embedding backend {backend!r}; use one of {EMBEDDING_BACKENDS}")


def export_dir(exports_root: Path, model_source: str, backend: str) -> Path:
    """Where ``backend``'s export of the model at ``model_source`` lives under ``exports_root``."""
    key = hashlib.sha256(f"{EXPORT_FORMAT}\n{model_source}".encode()).hexdigest()[:12]
    readable = Path(model_source.rstrip("/")).name or "model"
    return exports_root / f"{readable}-{key}" / backend


def _model_file(backend: str) -> str:
    return "model.onnx" if backend.startswith("onnx") else "model.xml"


def ensure_export(exports_root: Path, model_source: str, backend: str, load_fp32: Any) -> Path:
    """The path of ``backend``'s model file, exporting it first if this home has none.

    ``load_fp32()`` returns the float32 SentenceTransformer to export (called only to export).
    """
    target = export_dir(exports_root, model_source, backend)
    path = target / _model_file(backend)
    if path.exists():
        return path
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{backend}-", dir=target.parent))
    try:
        logger.info("exporting %s for the %s backend into %s", model_source, backend, target)
        _export(load_fp32(), backend, work)
        try:
            os.rename(work, target)  # atomic; fails if another process finished first
        except OSError:
            if not path.exists():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return path


def _export(model: SentenceTransformer, backend: str, out: Path) -> None:
    onnx_path = out / "model.onnx"
    _export_onnx(model, onnx_path)
    if backend == "onnx-int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        fp32 = out / "fp32.onnx"
        onnx_path.rename(fp32)
        quantize_dynamic(fp32, onnx_path, weight_type=QuantType.QInt8)
        fp32.unlink()
    elif backend.startswith("openvino"):
        import openvino as ov

        ov_model = ov.Core().read_model(onnx_path)
        if backend == "openvino-int8":
            ov_model = _quantize_openvino(model, ov_model)
        ov.save_model(ov_model, out / "model.xml")
        onnx_path.unlink()


def _export_onnx(model: SentenceTransformer, path: Path) -> None:
    import torch

    from memory_pipeline.embedding.query_encoder import (
        TRACE_TEXTS,
        SentenceEmbedding,
        quiet_tracing,
    )

    sample = model.preprocess(list(TRACE_TEXTS))
    names = tuple(n for n in INPUT_NAMES if n in sample)
    module = SentenceEmbedding(model, names).eval()
    axes = {n: {0: "batch", 1: "tokens"} for n in names}
    with torch.inference_mode(), quiet_tracing():
        torch.onnx.export(
            module,
            tuple(sample[n] for n in names),
            str(path),
            input_names=list(names),
            output_names=["sentence_embedding"],
            dynamic_axes={**axes, "sentence_embedding": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )


def _quantize_openvino(model: SentenceTransformer, ov_model: Any) -> Any:
    import nncf

    batches = [
        tokenize(model, list(CALIBRATION_TEXTS[i : i + 4]))
        for i in range(0, len(CALIBRATION_TEXTS), 4)
    ]
    return nncf.quantize(
        ov_model,
        nncf.Dataset(batches),
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=len(batches),
    )


def tokenize(model: SentenceTransformer, texts: list[str]) -> dict[str, np.ndarray]:
    """The exported graph's int64 inputs for ``texts`` (padded to the longest, truncated)."""
    encoded = model.tokenizer(
        texts,
        padding=True,
        truncation=True,
        max_length=model.max_seq_length,
        return_tensors="np",
    )
    return {n: np.asarray(encoded[n], dtype=np.int64) for n in INPUT_NAMES if n in encoded}


class ExportedEncoder:
    """Sentence embeddings (not normalised) from an exported model, for tokenised inputs."""

    def __init__(self, path: Path, backend: str) -> None:
        self.backend = backend
        if backend.startswith("onnx"):
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.log_severity_level = 3
            # idle threads sleep rather than spin: the cores are shared with Postgres and Chroma
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            self._session = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
            self._inputs = {i.name for i in self._session.get_inputs()}
        else:
            import openvino as ov

            self._compiled = ov.Core().compile_model(str(path), "CPU")
            self._inputs = {i.get_any_name() for i in self._compiled.inputs}

    def __call__(self, features: dict[str, np.ndarray]) -> np.ndarray:
        feed = {k: v for k, v in features.items() if k in self._inputs}
        if self.backend.startswith("onnx"):
            return np.asarray(self._session.run(None, feed)[0], dtype=np.float32)
        request = self._compiled.create_infer_request()  # one per call: callers may be threads
        return np.asarray(request.infer(feed)[self._compiled.output(0)], dtype=np.float32)
