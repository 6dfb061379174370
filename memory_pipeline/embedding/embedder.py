"""The embedder: one sentence-transformers model per process, run by the configured backend.

Why each choice (docs/decisions/): torch is imported only when a model is first loaded (0008);
bfloat16 where the CPU multiplies it natively (0013); bounded kernel cache and padded queries
(0006); malloc's free heap handed back after a multi-batch encode (0004); queries through a
checked trace (0012); ONNX Runtime / OpenVINO backends are a model change (0152).
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from memory_pipeline.embedding.backends import (
    ExportedEncoder,
    check_backend,
    ensure_export,
    model_id_for,
    tokenize,
)
from memory_pipeline.embedding.model_source import resolve_model_source
from memory_pipeline.embedding.sentences import with_sentence_chunks
from memory_pipeline.settings import EMBEDDING_PRECISIONS as PRECISIONS

if TYPE_CHECKING:
    import torch
    from sentence_transformers import SentenceTransformer

    from memory_pipeline.embedding.query_encoder import SentenceEncoder

logger = logging.getLogger(__name__)

#: Tokens shared by consecutive chunks of a long text, so a sentence cut at a chunk edge
#: is still whole in one of them.
CHUNK_OVERLAP_TOKENS = 32
#: Compiled oneDNN kernels kept per process (0006).
ONEDNN_PRIMITIVE_CACHE_CAPACITY = 16
#: Query token counts are rounded up to a multiple of this (padding is masked out).
QUERY_PAD_TOKENS = 8


def cpu_has_native_bfloat16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AMX tiles or AVX-512 BF16)."""
    import torch

    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def resolve_precision(precision: str, device: str | None) -> str:
    """The precision ``precision`` means on ``device``: ``float32`` or ``bfloat16``."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown embedding precision {precision!r}; use one of {PRECISIONS}")
    if precision != "auto":
        return precision
    on_cpu = device is None or device == "cpu"
    return "bfloat16" if on_cpu and cpu_has_native_bfloat16() else "float32"


class Embedder:
    """Turns texts into unit-length vectors with one sentence-transformers model.

    ``model_name`` is the configured model; ``model_id`` (recorded on rows and in Chroma) is it
    plus the ``backend`` unless torch; ``model_source`` is what gets loaded (a hub name or a
    local folder; by default resolved from ``model_name``); ``precision`` is one of
    :data:`PRECISIONS` (torch only; other backends export float32). Non-torch exports live
    under ``exports_dir`` (the home's ``models`` folder by default).
    """

    def __init__(
        self,
        model_name: str,
        batch_size: int = 32,
        model_source: str | None = None,
        device: str | None = None,
        precision: str = "auto",
        trace_queries: bool = True,
        backend: str = "torch",
        exports_dir: Path | None = None,
        sentence_vectors: bool = False,
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"unknown embedding precision {precision!r}; use one of {PRECISIONS}")
        check_backend(backend)
        self.model_name = model_name
        self.backend = backend
        #: Whether short multi-sentence texts also get a vector per sentence (0205).
        self.sentence_vectors = sentence_vectors
        self.model_id = model_id_for(model_name, backend, sentence_vectors)
        self.exports_dir = exports_dir
        self.batch_size = batch_size
        self.model_source = model_source or resolve_model_source(model_name)
        self.device = device
        self.precision = precision
        #: Whether queries may run through a checked TorchScript trace (:meth:`embed_queries`).
        self.trace_queries = trace_queries
        self._model: SentenceTransformer | None = None
        self._exported: ExportedEncoder | None = None
        self._exported_lock = threading.Lock()
        self._query_encoder: SentenceEncoder | None = None
        self._queried_once = False
        self._query_encoder_lock = threading.Lock()  # one trace, however many threads search
        #: Whether searches' queries run through the traced model (``None`` until chosen).
        self.query_encoder_traced: bool | None = None

    @property
    def model(self) -> SentenceTransformer:
        if self._model is None:
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
            # read when oneDNN makes its first kernel, i.e. at the first encode
            os.environ.setdefault(
                "ONEDNN_PRIMITIVE_CACHE_CAPACITY", str(ONEDNN_PRIMITIVE_CACHE_CAPACITY)
            )
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as transformers_logging

            transformers_logging.disable_progress_bar()  # keep stderr for our own messages

            precision = (
                resolve_precision(self.precision, self.device)
                if self.backend == "torch"
                else "float32"  # the exported graph's source; the model only tokenizes
            )
            logger.info(
                "loading embedding model %s from %s (%s)",
                self.model_id,
                self.model_source,
                precision,
            )
            try:
                model = SentenceTransformer(self.model_source, device=self.device)
            except Exception as exc:
                raise RuntimeError(
                    f"cannot load embedding model {self.model_id!r} from {self.model_source!r}: {exc}"
                ) from exc
            if precision == "bfloat16":
                import torch

                model = model.to(torch.bfloat16)
            self._model = model
        return self._model

    @property
    def exported(self) -> ExportedEncoder:
        """The backend's exported model (exported into the home on first use)."""
        if self._exported is None:
            with self._exported_lock:
                if self._exported is None:
                    root = self.exports_dir or _default_exports_dir()
                    path = ensure_export(root, self.model_source, self.backend, lambda: self.model)
                    self._exported = ExportedEncoder(path, self.backend)
        return self._exported

    @property
    def dimension(self) -> int:
        """Length of the vectors this model produces."""
        get_dim = (
            getattr(self.model, "get_embedding_dimension", None)
            or self.model.get_sentence_embedding_dimension
        )
        dim = get_dim()
        if dim is None:
            dim = int(self.embed_batch(["dimension probe"]).shape[1])
        return int(dim)

    @property
    def max_tokens(self) -> int:
        """Word pieces per chunk: the model window less its two special tokens."""
        return int(self.model.max_seq_length) - 2

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length float32 vectors for ``texts``, one row each, encoded in batches."""
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        if self.backend != "torch":
            return self._embed_exported(list(texts))
        vectors = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        vectors = np.asarray(vectors, dtype=np.float32)
        if len(texts) > self.batch_size:
            release_free_heap()
        # unit length in float32 whatever precision the model computed in
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.where(norms > 0, norms, 1.0)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length float32 vectors for a search's queries, one row each.

        The stable entry point for query encoding: one forward pass per batch, through the
        checked trace on torch (0012); other backends run their exported model.
        """
        if not texts or len(texts) > self.batch_size or self.backend != "torch":
            return self.embed_batch(texts)
        import torch

        encode = self._next_query_encoder()
        with torch.inference_mode():
            vectors = encode(self._query_features(list(texts))).float().cpu().numpy()
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.where(norms > 0, norms, 1.0)

    def _embed_exported(self, texts: list[str]) -> np.ndarray:
        """Unit-length vectors from the exported model, texts of like length batched together."""
        encode, model = self.exported, self.model
        order = np.argsort([-len(t) for t in texts], kind="stable")
        vectors = np.zeros((len(texts), 0), dtype=np.float32)
        for start in range(0, len(texts), self.batch_size):
            part = order[start : start + self.batch_size]
            out = encode(tokenize(model, [texts[i] for i in part]))
            if vectors.shape[1] == 0:
                vectors = np.zeros((len(texts), out.shape[1]), dtype=np.float32)
            vectors[part] = out
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.where(norms > 0, norms, 1.0)

    def _next_query_encoder(self) -> SentenceEncoder:
        """What :meth:`embed_queries` runs next: the traced model, or the model itself.

        A process's first query runs on the model (a one-shot CLI search never pays for
        tracing), later ones on the trace; threads wait for a trace being made.
        """
        if self._query_encoder is not None:
            return self._query_encoder
        from memory_pipeline.embedding.query_encoder import eager_encoder, traced_encoder

        with self._query_encoder_lock:
            if self._query_encoder is None:  # else made by another thread meanwhile
                if self.trace_queries and not self._queried_once:
                    self._queried_once = True
                    return eager_encoder(self.model)
                traced = (
                    traced_encoder(self.model, self._query_features) if self.trace_queries else None
                )
                self.query_encoder_traced = traced is not None
                self._query_encoder = traced or eager_encoder(self.model)
            return self._query_encoder

    def _query_features(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """The model's input tensors for ``texts``, padded to a multiple of QUERY_PAD_TOKENS."""
        model = self.model
        features = model.preprocess(texts)
        pad_id = model.tokenizer.pad_token_id or 0
        return {
            k: _pad_tokens(v, pad_id if k == "input_ids" else 0).to(model.device)
            for k, v in features.items()
            if hasattr(v, "to")
        }

    def chunk_text(self, text: str) -> list[str]:
        """The texts embedded for ``text``: its pieces by the model window, then its sentences
        where :attr:`sentence_vectors` asks (:func:`~.sentences.with_sentence_chunks`)."""
        chunks = self._window_chunks(text)
        return with_sentence_chunks(chunks) if self.sentence_vectors else chunks

    def _window_chunks(self, text: str) -> list[str]:
        """Split ``text`` into pieces that each fit the model window, overlapping a little.

        A text that fits is returned whole; nothing of a longer one is dropped.
        """
        window = self.max_tokens
        if len(text) <= window:  # every word piece covers at least one character
            return [text]
        tokenizer = self.model.tokenizer
        encoding = tokenizer(
            text, add_special_tokens=False, return_offsets_mapping=True, verbose=False
        )
        offsets = encoding["offset_mapping"]
        if len(offsets) <= window:
            return [text]
        chunks: list[str] = []
        step = window - CHUNK_OVERLAP_TOKENS
        start = 0
        while start < len(offsets):
            end = min(start + window, len(offsets))
            char_start = 0 if start == 0 else offsets[start][0]
            char_end = len(text) if end == len(offsets) else offsets[end - 1][1]
            chunks.append(text[char_start:char_end])
            if end == len(offsets):
                break
            start += step
        return chunks


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or ``None`` where the C library has none (musl, macOS)."""
    try:  # the symbols already loaded into this process, the C library's among them
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None


def release_free_heap() -> bool:
    """Return the memory malloc holds free to the OS; whether this C library could do it."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


def _pad_tokens(tensor: torch.Tensor, value: int) -> torch.Tensor:
    """A (batch, tokens) tensor right-padded with ``value`` to a multiple of QUERY_PAD_TOKENS."""
    if tensor.dim() != 2:
        return tensor
    import torch.nn.functional as F

    missing = -tensor.shape[1] % QUERY_PAD_TOKENS
    return F.pad(tensor, (0, missing), value=value) if missing else tensor


def _default_exports_dir() -> Path:
    from memory_pipeline.settings import Settings

    return Settings.from_env().models_dir


#: The process's one :class:`Embedder` for a set of arguments (its model loads on first use).
load_embedder = functools.cache(Embedder)
