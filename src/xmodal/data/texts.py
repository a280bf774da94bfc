"""Reading text files and captions: UTF-8 only, with errors that name the file and line."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from xmodal.errors import DataError


def read_utf8(path: Path) -> str:
    """The whole file as text; a file that is not UTF-8 gets an error naming the byte offset."""
    try:
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise DataError(path, "file not found", "check the path, or pass --skip-bad to skip it") from None
    except UnicodeDecodeError as error:
        line = path.read_bytes()[: error.start].count(b"\n") + 1
        raise DataError(
            path,
            f"not valid UTF-8 (byte {error.start})",
            "re-save the file as UTF-8, or pass --skip-bad to skip it",
            line=line,
        ) from None


def read_document(path: Path) -> str:
    """Text of a ``.txt`` file, or of a ``.xml`` document with its tags stripped.

    The Wikipedia dataset's ``texts/<id>.xml`` wrap the article in a ``<document><text>`` pair;
    any well-formed XML is accepted and all of its character data is joined.
    """
    content = read_utf8(path)
    if path.suffix.lower() == ".xml":
        try:
            root = ET.fromstring(content)
            content = " ".join(root.itertext())
        except ET.ParseError as error:
            # Several published copies are not well-formed (bare '&'); fall back to stripping tags.
            if "<" not in content:
                raise DataError(path, f"unreadable XML: {error}", "fix or remove the file") from None
            content = re.sub(r"<[^>]+>", " ", content)
    return normalise_caption(content)


def normalise_caption(text: str) -> str:
    """Collapse runs of white space; keep every script and character as it is."""
    return " ".join(text.split())


def require_caption(text: str, where: str | Path, line: int | None = None) -> str:
    """The caption, normalised; an empty one is an error (it cannot be matched to anything)."""
    caption = normalise_caption(text)
    if not caption:
        raise DataError(where, "empty caption", "write a caption or remove the record", line=line)
    return caption
