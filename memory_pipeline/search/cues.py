"""Cues a query gives about what it wants: a time, or a person who speaks in the memories.

General rules about memories, not about any data set: a question that asks *when* wants a
memory that says when; a question that names someone who speaks in the conversation wants what
that person said. Memories' side of each cue (their speaker, whether they mention a time) is
read with the candidates' facts (:mod:`memory_pipeline.storage.search_reads`).
"""

from __future__ import annotations

import re

#: A question about time: when, what date/day/year, how long, how many days/weeks/...
_ASKS_TIME = re.compile(
    r"\b(when|what (time|date|day|year|month|week)|which (year|month|day|week|date)|"
    r"how long|how many (days|weeks|months|years)|since when|until when|how old)\b",
    re.IGNORECASE,
)
#: A time expression in a memory's own words (Postgres ARE syntax, case-insensitive): relative
#: days and periods, weekdays, month names, years, "N days ago".
MENTIONS_TIME_SQL = (
    r"\m(yesterday|today|tonight|tomorrow|ago|lately|recently|"
    r"last (night|week|weekend|month|year|summer|winter|spring|fall|autumn|time)|"
    r"next (week|weekend|month|year|summer|winter|spring|fall|autumn)|"
    r"this (week|weekend|month|year|morning|evening|summer|winter|spring|fall|autumn)|"
    r"(mon|tues|wednes|thurs|fri|satur|sun)days?|"
    r"january|february|march|april|june|july|august|september|october|november|december|"
    r"(19|20)[0-9][0-9])\M"
)
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)


def asks_about_time(query: str) -> bool:
    """Whether ``query`` asks when something happened (or how long, how old)."""
    return _ASKS_TIME.search(query) is not None


def named_speakers(query: str, speakers: set[str]) -> set[str]:
    """The ``speakers`` whose name (first word, any case) ``query`` mentions as a word."""
    words = {w.casefold() for w in _WORD.findall(query)}
    named = set()
    for speaker in speakers:
        first = _WORD.findall(speaker)
        if first and first[0].casefold() in words:
            named.add(speaker)
    return named
