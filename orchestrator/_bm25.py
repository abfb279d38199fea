"""bm25s, imported so that the host application's logging is left as it was.

bm25s sets its own logger to DEBUG when it is imported: an application logging at INFO would then
see "Building index from IDs objects" on every ranking. Every fanout module reaches bm25s here.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["bm25s"]


def bm25s() -> Any:
    """The bm25s module, its logger's level as it was before the import."""
    logger = logging.getLogger("bm25s")
    level = logger.level
    import bm25s as module

    logger.setLevel(level)
    return module
