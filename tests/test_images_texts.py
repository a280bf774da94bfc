from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from xmodal.data.images import load_rgb
from xmodal.data.texts import read_document, read_utf8, require_caption
from xmodal.errors import DataError


def test_transparent_pixels_become_white(tmp_path: Path):
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)  # opaque red; everything else fully transparent
    path = tmp_path / "a.png"
    Image.fromarray(rgba, "RGBA").save(path)
    pixels = np.asarray(load_rgb(path))
    assert pixels.shape == (4, 4, 3)
    assert tuple(pixels[0, 0]) == (255, 0, 0)
    assert tuple(pixels[3, 3]) == (255, 255, 255)
    assert load_rgb(path, size=8).size == (8, 8)


def test_truncated_image_names_the_file(tmp_path: Path):
    path = tmp_path / "broken.jpg"
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataError, match=r"broken\.jpg: unreadable or truncated image"):
        load_rgb(path)


def test_missing_image(tmp_path: Path):
    with pytest.raises(DataError, match=r"nope\.png: image file not found"):
        load_rgb(tmp_path / "nope.png")


def test_non_utf8_text_names_file_and_line(tmp_path: Path):
    path = tmp_path / "t.txt"
    path.write_bytes("line one\nligne deux é\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"t\.txt:2: not valid UTF-8"):
        read_utf8(path)


def test_xml_document_any_script(tmp_path: Path):
    path = tmp_path / "d.xml"
    path.write_text("<document><title>Ελληνικά</title><text>東京  は\n首都 &amp; 都市</text></document>", "utf-8")
    assert read_document(path) == "Ελληνικά 東京 は 首都 & 都市"


def test_empty_caption_is_an_error():
    assert require_caption("  a   dog ", "f.csv", 3) == "a dog"
    with pytest.raises(DataError, match=r"f\.csv:3: empty caption"):
        require_caption("   ", "f.csv", 3)


def test_malformed_xml_gives_the_same_text_a_parser_would(tmp_path: Path):
    good, bad = tmp_path / "good.xml", tmp_path / "bad.xml"
    good.write_text('<document id="1" name="A &amp; B"><title>Ελληνικά</title><!-- note --><text>Tom &amp; Jerry '
                    "&#233;t&#xE9;</text></document>", "utf-8")
    bad.write_text('<document id="1" name="A & B"><title>Ελληνικά</title><!-- note --><text>Tom & Jerry '
                   "&eacute;t&#xE9; &ndash; &nosuch; a&b</text></document>", "utf-8")
    assert read_document(good) == "Ελληνικά Tom & Jerry été"
    assert read_document(bad) == "Ελληνικά Tom & Jerry été – &nosuch; a&b"
