"""Reading text files and captions: UTF-8 only, with errors that name the file and line."""

from __future__ import annotations

import html
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from xmodal.errors import DataError


def read_utf8(path: Path, *, whole_list: bool = False) -> str:
    """The whole file as text; a file that is not UTF-8 gets an error naming the line and byte.

    ``whole_list``: the file lists the whole dataset (a CSV, a JSONL, a list file), so skipping
    bad records cannot help and the error does not suggest ``--skip-bad``.
    """
    skip = "" if whole_list else ", or pass --skip-bad to skip it"
    try:
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise DataError(path, "file not found", f"check the path{skip}") from None
    except UnicodeDecodeError as error:
        data = path.read_bytes()
        line = data[: error.start].count(b"\n") + 1
        fix = ("re-save the file as UTF-8 (for instance iconv -f latin1 -t utf-8 FILE > NEW), then read NEW"
               if whole_list else "re-save the file as UTF-8, or pass --skip-bad to skip it")
        raise DataError(path, f"not valid UTF-8 (byte {error.start}: 0x{data[error.start]:02x})", fix,
                        line=line) from None


def read_document(path: Path) -> str:
    """Text of a ``.txt`` file, or of a ``.xml`` document with its tags stripped."""
    content = read_utf8(path)
    if path.suffix.lower() == ".xml":
        content = xml_text(content, path)
    return normalise_caption(content)


TAG = re.compile(r"<!--.*?-->|<[^>]+>", re.S)
ENTITY = re.compile(r"&(?:#[0-9]+|#[xX][0-9a-fA-F]+|[A-Za-z][A-Za-z0-9]*);")


def xml_text(content: str, where: str | Path) -> str:
    """All character data of an XML document, its tags (and their attributes) left out.

    The Wikipedia dataset's ``texts/<id>.xml`` wrap the article in ``<document><text>``, and
    888 of the 2,866 published files are not well-formed (HTML entities such as ``&ndash;``
    that XML does not define, bare ``&``). Those still give their article, the same text a
    parser would: tags and comments are stripped with a tolerant pattern, and ``&name;`` /
    ``&#n;`` entities are unescaped as HTML defines them (a bare ``&`` stays as it is).
    """
    try:
        return " ".join(ET.fromstring(content).itertext())
    except ET.ParseError as error:
        if "<" not in content:
            raise DataError(where, f"unreadable XML: {error}", "fix or remove the file") from None
        body = TAG.sub(" ", content)
        return ENTITY.sub(lambda entity: html.unescape(entity.group(0)), body)


def normalise_caption(text: str) -> str:
    """Collapse runs of white space; keep every script and character as it is."""
    return " ".join(text.split())


def require_caption(text: str, where: str | Path, line: int | None = None) -> str:
    """The caption, normalised; an empty one is an error (it cannot be matched to anything)."""
    caption = normalise_caption(text)
    if not caption:
        raise DataError(where, "empty caption", "write a caption or remove the record", line=line)
    return caption
