"""CPython's cyclic garbage collector, run less often in a process that learns online.

Such a process (the worker, the evaluation run) holds a large, growing learned state while
each event allocates many short-lived objects. With the default thresholds (700, 10, 10) the
collector walks that state again and again: in a worker at saturation collections took a large
share of the main thread, and in ``coursestream evaluate`` on OULAD AAA-2013J about 2 s of a
13 s run. Reference counting frees nearly everything; the collector is only for cycles.
"""

from __future__ import annotations

import gc

#: The cyclic garbage collector's thresholds (generations 0, 1 and 2).
THRESHOLDS = (20_000, 20, 100)


def collect_less_often() -> None:
    """Keep the collector off everything allocated so far (``gc.freeze``: what was loaded at
    start) and run it at :data:`THRESHOLDS` from now on."""
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
