"""How xmodal's library code reports: module loggers under ``xmodal``, configured once by the CLI.

Library modules call ``logging.getLogger(__name__)`` and never print. The command line calls
:func:`configure_logging`, which sends INFO lines (one per training epoch, extraction and
evaluation steps) to stderr whether or not it is a terminal, so ``xmodal train ... > log 2>&1``
keeps the epoch lines; ``--quiet`` keeps only warnings, ``--verbose`` adds debug lines.
"""

from __future__ import annotations

import logging
import sys

_HANDLER_NAME = "xmodal-cli"


class _CurrentStderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the record (test runners swap it)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def configure_logging(verbosity: int = 0) -> None:
    """``verbosity`` -1: warnings only; 0: INFO; 1: DEBUG. Safe to call more than once."""
    level = {-1: logging.WARNING, 0: logging.INFO}.get(verbosity, logging.DEBUG)
    logger = logging.getLogger("xmodal")
    logger.setLevel(level)
    handler = next((h for h in logger.handlers if h.get_name() == _HANDLER_NAME), None)
    if handler is None:
        handler = _CurrentStderr()
        handler.set_name(_HANDLER_NAME)
        logger.addHandler(handler)
    handler.setFormatter(logging.Formatter("%(message)s" if level > logging.DEBUG else "%(name)s: %(message)s"))
