"""Errors that tell the user what went wrong, where, and what to do.

Every error raised for bad user input is an :class:`XmodalError`; the CLI prints its message
and exits with status 2 instead of showing a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


class XmodalError(Exception):
    """An error caused by input or configuration, with a message meant for the user."""


class DataError(XmodalError):
    """Bad input data: names the file (and line or field) and what to do about it."""

    def __init__(self, where: str | Path, problem: str, fix: str = "", line: int | None = None):
        self.where = str(where)
        self.line = line
        self.problem = problem
        self.fix = fix
        location = f"{self.where}:{line}" if line is not None else self.where
        message = f"{location}: {problem}"
        if fix:
            message += f" ({fix})"
        super().__init__(message)


class NotFoundError(XmodalError):
    """What was asked for is not there (an item id in an index): a service answers 404."""


class TooLargeError(XmodalError):
    """The input is over a limit (pixels, bytes): a service answers 413."""


class OversizedImageError(DataError, TooLargeError):
    """An image over the pixel limit (a possible decompression bomb)."""


class DataChangedError(XmodalError):
    """A run's data is not what it was trained on; ``same_items`` when every recorded item of every
    split is still there and no other was added (what changed is inside the items or their files)."""

    def __init__(self, message: str, same_items: bool):
        super().__init__(message)
        self.same_items = same_items


@dataclass
class SkipReport:
    """Counts what a reader skipped when the user asked for ``--skip-bad``.

    With ``skip_bad=False`` (the default) :meth:`handle` re-raises, so a reader can route every
    bad record through one place and still fail loudly unless told otherwise.
    """

    skip_bad: bool = False
    skipped: list[DataError] = field(default_factory=list)

    def handle(self, error: DataError) -> None:
        if not self.skip_bad:
            raise error
        self.skipped.append(error)

    @property
    def count(self) -> int:
        return len(self.skipped)

    def messages(self) -> list[str]:
        """One line per skipped record: where it is and what was wrong."""
        return [str(error) for error in self.skipped]

    def summary(self, limit: int = 5) -> str:
        if not self.skipped:
            return "no bad records"
        lines = [f"skipped {self.count} bad record(s):"]
        lines += [f"  - {e}" for e in self.skipped[:limit]]
        if self.count > limit:
            lines.append(f"  ... and {self.count - limit} more")
        return "\n".join(lines)
