"""A checked TorchScript trace of the model, for the few short texts of a search.

Why: less Python around the small kernels of a short query (docs/decisions/0012, 0001).

The trace is made on a padded batch and checked against the eager model on other lengths and
batch sizes; if tracing fails or disagrees, queries stay on the eager model.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import warnings
from collections.abc import Callable, Iterator, Mapping

import torch

logger = logging.getLogger(__name__)

Features = Mapping[str, torch.Tensor]
#: Features of a batch of texts → their sentence embeddings (not normalised).
SentenceEncoder = Callable[[Features], torch.Tensor]

#: Traced on a padded batch of two texts of different lengths.
TRACE_TEXTS = (
    "what broke the nightly import",
    "a longer question about which retry policy the embedding batcher used last week",
)
#: Checked on other lengths and batch sizes than the trace saw.
CHECK_BATCHES = (
    ("x",),
    (
        "who fixed the flaky deploy",
        "notes on pgvector",
        "an even longer question that runs well past the traced length, about chunking "
        "overlaps, tokenizer windows, batch sizes and what each of them cost in the bench",
    ),
)
#: Least cosine similarity between traced and eager vectors for the trace to be used.
MIN_AGREEMENT = 0.9999


class SentenceEmbedding(torch.nn.Module):
    """The model's forward with positional tensors (what tracing takes)."""

    def __init__(self, model: torch.nn.Module, names: tuple[str, ...]) -> None:
        super().__init__()
        self.model = model
        self.names = names

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return _sentence_embedding(self.model, dict(zip(self.names, tensors, strict=True)))


@contextlib.contextmanager
def quiet_tracing() -> Iterator[None]:
    """Tracing reads every attribute of the modules, deprecated ones included: keep it quiet."""
    loggers = [logging.getLogger(n) for n in ("sentence_transformers", "transformers")]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation and tracer notes; the trace is checked
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)


def _sentence_embedding(model: torch.nn.Module, features: Features) -> torch.Tensor:
    return model(dict(features))["sentence_embedding"]


def eager_encoder(model: torch.nn.Module) -> SentenceEncoder:
    """The model itself, as a :data:`SentenceEncoder`."""
    return functools.partial(_sentence_embedding, model)


def traced_encoder(
    model: torch.nn.Module, features_of: Callable[[list[str]], dict[str, torch.Tensor]]
) -> SentenceEncoder | None:
    """A checked trace of ``model``, or ``None`` where tracing fails or disagrees.

    ``features_of`` turns texts into the model's (padded) input tensors.
    """
    sample = features_of(list(TRACE_TEXTS))
    names = tuple(sample)
    try:
        with torch.inference_mode(), quiet_tracing():
            traced = torch.jit.trace(
                SentenceEmbedding(model, names).eval(),
                tuple(sample[n] for n in names),
                check_trace=False,
            )
    except Exception as exc:  # any failure leaves the eager model in use
        logger.info("queries use the eager model: tracing failed (%s: %s)", type(exc).__name__, exc)
        return None

    def encode(features: Features) -> torch.Tensor:
        return traced(*(features[n] for n in names))

    eager = eager_encoder(model)
    for texts in CHECK_BATCHES:
        features = features_of(list(texts))
        try:
            with torch.inference_mode():
                agreement = torch.nn.functional.cosine_similarity(
                    encode(features).float(), eager(features).float()
                ).min()
        except Exception as exc:
            logger.info("queries use the eager model: the trace failed its check (%s)", exc)
            return None
        if float(agreement) < MIN_AGREEMENT:
            logger.info(
                "queries use the eager model: the trace agrees only to cosine %.6f", agreement
            )
            return None
    return encode
