"""Close-match suggestions for a mistyped role or team ("Did you mean ..."), quick among many names."""

from __future__ import annotations

import difflib
from collections import Counter, defaultdict
from collections.abc import Iterable
from functools import lru_cache
from itertools import chain

from importer.values import text_key


class NameIndex:
    """Close-match suggestions among many names, each in time bounded by the few names alike.

    `difflib.get_close_matches` over every team is 0.26 s per question among 20,000 teams. Here
    the names are indexed once by their trigrams; a question scores only the names that share a
    trigram that is not common to most of them, and difflib judges the best few of those by its
    usual ratio (cutoff 0.6). Answers are remembered: a sheet repeats its unknown teams.
    """

    def __init__(self, names: Iterable[str]) -> None:
        self._names: dict[str, str] = {}
        for name in names:
            self._names.setdefault(text_key(name), name)
        self._keys = list(self._names)
        postings: dict[str, list[int]] = defaultdict(list)
        if len(self._keys) > _SCAN_ALL_BELOW:
            for position, key in enumerate(self._keys):
                for gram in _trigrams(key):
                    postings[gram].append(position)
        self._postings = dict(postings)
        self._answers: dict[str, str | None] = {}

    def closest(self, value: str) -> str | None:
        """The name closest to a mistyped value, if one is close (case-insensitive)."""
        key = text_key(value)
        if key not in self._answers:
            self._answers[key] = self._closest(key)
        return self._answers[key]

    def _closest(self, key: str) -> str | None:
        if len(self._keys) <= _SCAN_ALL_BELOW:
            candidates = self._keys
        else:
            lists = sorted((self._postings.get(g, []) for g in _trigrams(key)), key=len)
            # The rarer trigrams say which names are alike; one shared by most names says little
            # and costs a pass over them all. At least the three rarest are always counted.
            counted = [p for i, p in enumerate(lists) if i < 3 or len(p) <= _COMMON_GRAM]
            shared = Counter(chain.from_iterable(counted))
            candidates = [self._keys[p] for p, _ in shared.most_common(_CANDIDATES)]
        found = difflib.get_close_matches(key, candidates, n=1, cutoff=_CUTOFF)
        return self._names[found[0]] if found else None


_CUTOFF = 0.6  # difflib's default: what "close" has always meant here
_SCAN_ALL_BELOW = 200  # a handful of roles or teams: difflib over all of them
_COMMON_GRAM = 2_000
_CANDIDATES = 50


def _trigrams(key: str) -> set[str]:
    padded = f"  {key} "
    return {padded[i : i + 3] for i in range(len(padded) - 2)}


def suggest(value: str, choices: Iterable[str]) -> str | None:
    """The closest choice to a mistyped value, if one is close (case-insensitive)."""
    return _index_of(tuple(choices)).closest(value)


@lru_cache(maxsize=64)
def _index_of(choices: tuple[str, ...]) -> NameIndex:
    # A sheet's few allowed values (roles) are asked about once per bad cell.
    return NameIndex(choices)
