"""Sentence vectors: a short memory that says several things gets a vector per sentence too.

One vector for a turn that says three things is blurred over all three; a question about one of
them may match its sentence better than the whole. With ``MEMORY_PIPELINE_SENTENCE_VECTORS``
each text that fits the model window in one chunk and has :data:`MIN_SENTENCES` to
:data:`MAX_SENTENCES` sentences is embedded whole (chunk 0) and sentence by sentence (chunks 1…),
so the dense retriever's best chunk of a memory is the better of the two
(docs/decisions/0205-sentence-vectors.md).
"""

from __future__ import annotations

import re
from typing import Final

#: Appended to a model id whose texts also get sentence vectors (a change re-embeds, 0205).
SENTENCE_VECTORS_SUFFIX: Final = "+sentences"
#: A text of fewer sentences is one fact already; one of more is a document, not a turn.
MIN_SENTENCES: Final = 2
MAX_SENTENCES: Final = 16

# After ., ! or ? (a closing quote or bracket may follow) and before whitespace.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+")


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text``, split after sentence punctuation; blank pieces dropped."""
    out: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        piece = text[start : match.end()].strip()
        if piece:
            out.append(piece)
        start = match.end()
    tail = text[start:].strip()
    if tail:
        out.append(tail)
    return out


def with_sentence_chunks(chunks: list[str]) -> list[str]:
    """``chunks`` (a text's chunks by the model window) plus one per sentence when the text is
    one chunk of :data:`MIN_SENTENCES` to :data:`MAX_SENTENCES` sentences."""
    if len(chunks) != 1:
        return chunks
    sentences = split_sentences(chunks[0])
    if MIN_SENTENCES <= len(sentences) <= MAX_SENTENCES:
        return [chunks[0], *sentences]
    return chunks
