"""Process-wide state that the command line, owning its process, tunes around an import.

The library never touches it (a web server imports the library and runs other work beside it);
an entry point that owns its process opts in here and gets everything back afterwards.
"""

from __future__ import annotations

import contextlib
import csv
import gc
from collections.abc import Iterator

# The cyclic collector's first threshold while an import runs (the default is 700).
IMPORT_GC_THRESHOLD = 50_000


@contextlib.contextmanager
def tuned_for_import(*, max_cell_chars: int) -> Iterator[None]:
    """Around one import: the garbage collector runs 70 times less often, and the csv module's cap
    on a cell admits the import's own cell limit; both are restored after.

    An import makes millions of short-lived lists and tuples (rows), none in reference cycles; at
    the default threshold the collector ran thousands of times over an ever larger heap, about a
    quarter of the reading time. Cycles are still collected, just in larger batches. The csv
    module's cap (131,072 characters by default) would otherwise cut a cell the limit allows.
    """
    thresholds = gc.get_threshold()
    field_limit = csv.field_size_limit()
    gc.set_threshold(max(IMPORT_GC_THRESHOLD, thresholds[0]), *thresholds[1:])
    csv.field_size_limit(max(field_limit, max_cell_chars + 1))
    try:
        yield
    finally:
        csv.field_size_limit(field_limit)
        gc.set_threshold(*thresholds)
