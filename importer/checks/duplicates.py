"""Whole-file duplicates: rows of one file that must not share a key, found across chunks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from importer.addresses import email_keys
from importer.errors import FileLevelError
from importer.values import ErrorCode, RowError, UserType

if TYPE_CHECKING:
    from importer.checks.rules import Validator

# Two SipHash keys: a row's duplicate key is remembered as 128 bits, not as its text.
_HASH_KEYS = ("importer-dup-k1.", "importer-dup-k2.")


@dataclass(slots=True)
class DuplicateTracker:
    """Whole-file duplicate detection, exact across chunks, in 24 bytes per distinct key.

    Each distinct key is remembered as two 64-bit SipHash values and its first row, in numpy arrays
    sorted by hash: about 24 MB for a million rows, where a dict of the texts took about 150 MB.
    Two different keys that share all 128 bits (odds around 1e-27 in a million rows) are caught
    when the first copy is read back, never silently merged.

    A row whose key was seen before is rejected at once. When the first copy lies in an earlier
    chunk it may already be loaded: it is listed in `late` so the pipeline can take it back and
    fill in its value.
    """

    groups: dict[tuple[int, int], list[int]] = field(default_factory=dict)
    keys: dict[tuple[int, int], str] = field(default_factory=dict)
    values: dict[int, str] = field(default_factory=dict)
    late: set[int] = field(default_factory=set)
    _h1: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.uint64))
    _h2: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.uint64))
    _rows: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))

    def observe(self, keys: pd.Series, shown: pd.Series) -> set[int]:
        """Register a chunk's keys (index = row numbers; "" = no key); return its duplicate rows."""
        present = keys.ne("").to_numpy()
        texts = keys.to_numpy(dtype=object)[present]
        rows = keys.index.to_numpy(dtype=np.int64)[present]
        if not len(rows):
            return set()
        h1 = pd.util.hash_array(texts, hash_key=_HASH_KEYS[0], categorize=False)
        h2 = pd.util.hash_array(texts, hash_key=_HASH_KEYS[1], categorize=False)
        earlier = self._earlier_rows(h1, h2)
        repeated = pd.DataFrame({"h1": h1, "h2": h2}).duplicated(keep=False).to_numpy()
        suspects = np.flatnonzero((earlier >= 0) | repeated)
        duplicates: set[int] = set()
        for i in suspects.tolist():  # the few rows whose key is not new, in file order
            row, key, text = int(rows[i]), (int(h1[i]), int(h2[i])), str(texts[i])
            group = self.groups.get(key)
            if group is None:
                first = int(earlier[i])
                self.keys[key] = text
                if first < 0:  # a first copy in this chunk; its next copy is in this chunk too
                    self.groups[key] = [row]
                    self.values[row] = str(shown.at[row])
                    continue
                self.groups[key] = group = [first]
                self.late.add(first)
            elif self.keys[key] != text:
                raise _collision(row)
            if len(group) == 1 and group[0] not in self.late:
                duplicates.add(group[0])
            group.append(row)
            duplicates.add(row)
            self.values[row] = str(shown.at[row])
        self._remember(h1, h2, rows, new=earlier < 0)
        return duplicates

    def verify(self, firsts: dict[int, str]) -> None:
        """Check first copies read back (row -> key) against the key their later copies share."""
        for group_key, group in self.groups.items():
            if group[0] in firsts and self.keys[group_key] != firsts[group[0]]:
                raise _collision(group[0])

    def _earlier_rows(self, h1: np.ndarray, h2: np.ndarray) -> np.ndarray:
        """For each hash pair, the first row of an earlier chunk with the same pair, or -1."""
        found = np.full(len(h1), -1, dtype=np.int64)
        if not len(self._h1):
            return found
        order = np.argsort(h1)  # sorted queries walk the remembered array in order
        start = np.searchsorted(self._h1, h1[order], side="left")
        hits = np.flatnonzero(start < len(self._h1))
        hits = hits[self._h1[start[hits]] == h1[order][hits]]
        for k in hits.tolist():  # rare: the hash was seen before
            i, j = int(order[k]), int(start[k])
            while j < len(self._h1) and self._h1[j] == h1[i]:
                if self._h2[j] == h2[i]:
                    found[i] = self._rows[j]
                    break
                j += 1
        return found

    def _remember(self, h1: np.ndarray, h2: np.ndarray, rows: np.ndarray, *, new: np.ndarray) -> None:
        """Add this chunk's new keys (their first row in the chunk), keeping the arrays sorted."""
        frame = pd.DataFrame({"h1": h1[new], "h2": h2[new], "row": rows[new]})
        frame = frame.drop_duplicates(subset=["h1", "h2"], keep="first").sort_values("h1", kind="stable")
        added = frame["h1"].to_numpy()
        at = np.searchsorted(self._h1, added, side="right")
        self._h1 = np.insert(self._h1, at, added)
        self._h2 = np.insert(self._h2, at, frame["h2"].to_numpy())
        self._rows = np.insert(self._rows, at, frame["row"].to_numpy())

    def errors(self, validator: Validator, *, key: str, code: ErrorCode) -> list[RowError]:
        """One error per copy, each naming the other rows."""
        errors: list[RowError] = []
        for rows in self.groups.values():
            for row in rows:
                others = [r for r in rows if r != row]
                errors.append(validator.error(row, key, code, self.values.get(row, ""), rows=tuple(others)))
        return errors


def _collision(row: int) -> FileLevelError:
    return FileLevelError(
        f"two different duplicate keys share a 128-bit hash (row {row}): the file's rows cannot be "
        "told apart safely; nothing was written."
    )


def duplicate_keys(frame: pd.DataFrame, *, user_type: UserType, valid: pd.Series) -> pd.Series:
    """The key two rows of one file must not share: the address's comparison form (emails.email_key),
    or the name and team; "" (no key) where the key cell is not valid."""
    if user_type is UserType.PORTAL:
        addresses = frame["email"].where(valid, "").tolist()
        return pd.Series(email_keys(addresses), index=frame.index, dtype=object)
    team = frame["team"].str.lower() if "team" in frame else ""
    keys = frame["name"].str.lower() + "\x1f" + team
    return keys.where(valid, "")
