"""Search over your own collections with a trained run: indexes, the engine, the REST service.

``SearchIndex`` encodes a collection and keeps it on disk (versioned; exact, faiss or Milvus
first stage); ``SearchEngine`` answers text and image queries from one, in one stage for
embedding models and two for pairwise ones (:mod:`xmodal.eval.two_stage`); ``create_app`` serves
an engine over HTTP with the web page. Imported on first use, so a backend module loads alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["SearchEngine", "SearchIndex", "create_app"]

if TYPE_CHECKING:
    from xmodal.search.engine import SearchEngine
    from xmodal.search.index import SearchIndex
    from xmodal.search.service import create_app

_HOMES = {"SearchEngine": "xmodal.search.engine", "SearchIndex": "xmodal.search.index",
          "create_app": "xmodal.search.service"}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'xmodal.search' has no attribute {name!r}")
