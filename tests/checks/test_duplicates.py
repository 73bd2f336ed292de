"""Whole-file duplicate detection across chunks, remembered as hashes: exact, and never silently wrong."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from importer.checks.duplicates import DuplicateTracker
from importer.errors import FileLevelError


def chunk(first_row: int, keys: list[str]) -> tuple[pd.Series, pd.Series]:
    index = pd.Index(range(first_row, first_row + len(keys)), name="row")
    return pd.Series(keys, index=index, dtype=object), pd.Series([k.upper() for k in keys], index=index)


def test_copies_within_and_across_chunks_are_grouped_in_file_order() -> None:
    tracker = DuplicateTracker()
    assert tracker.observe(*chunk(2, ["a", "b", "a", "c", ""])) == {2, 4}
    assert tracker.observe(*chunk(7, ["b", "d", "a", ""])) == {7, 9}
    assert tracker.observe(*chunk(11, ["d", "d", "e", "c"])) == {11, 12, 14}
    assert sorted(tracker.groups.values()) == [[2, 4, 9], [3, 7], [5, 14], [8, 11, 12]]
    # First copies in an earlier chunk may be written already: the pipeline takes them back.
    assert tracker.late == {3, 5, 8}
    assert tracker.values[4] == "A" and tracker.values[12] == "D"
    assert 6 not in tracker.values  # a blank key is never a duplicate


def test_new_keys_are_remembered_as_24_bytes_each_and_nothing_else() -> None:
    tracker = DuplicateTracker()
    for start in range(0, 200_000, 50_000):
        keys = [f"person{n}@example.com" for n in range(start, start + 50_000)]
        assert tracker.observe(*chunk(start + 2, keys)) == set()
    remembered = tracker._h1.nbytes + tracker._h2.nbytes + tracker._rows.nbytes
    assert remembered == 200_000 * 24
    assert not tracker.groups and not tracker.values


def test_two_different_keys_with_the_same_hash_stop_the_import(monkeypatch: pytest.MonkeyPatch) -> None:
    # Force every key onto one hash: the tracker must notice the texts differ, not merge them.
    monkeypatch.setattr(pd.util, "hash_array", lambda values, **_: np.zeros(len(values), dtype=np.uint64))
    tracker = DuplicateTracker()
    with pytest.raises(FileLevelError, match="share a 128-bit hash"):
        tracker.observe(*chunk(2, ["a", "b"]))


def test_a_first_copy_read_back_is_checked_against_its_later_copies() -> None:
    tracker = DuplicateTracker()
    tracker.observe(*chunk(2, ["a", "b"]))
    tracker.observe(*chunk(4, ["a"]))
    tracker.verify({2: "a"})  # what row 2 holds when read back: the same key
    with pytest.raises(FileLevelError, match="row 2"):
        tracker.verify({2: "z"})
