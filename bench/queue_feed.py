"""The seeds' way of moving batches, shared by the benchmarks that compare against it."""
from __future__ import annotations

import queue


def put_until_stopped(q, batch, stop) -> bool:
    """Put `batch` on a bounded multiprocessing.Queue, waiting for room unless `stop` is set."""
    while not stop.is_set():
        try:
            q.put(batch, timeout=0.1)
            return True
        except queue.Full:
            pass
    return False
