"""The web service of ``xmodal serve``: same rankings as the CLI, limits as clean 4xx, the page."""

from __future__ import annotations

import io
import json

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from test_feature_store import home  # noqa: F401  (the fixture: a private home, fake encoders)
from test_search_index import trained  # noqa: F401  (the fixture: trained dual and JGCAR runs)
from xmodal.cli import main
from xmodal.search.engine import SearchEngine
from xmodal.search.service import Limits, create_app


def _client(trained, tmp_path, model: str, limits: Limits | None = None):  # noqa: F811
    index = tmp_path / f"index-{model}"
    assert main(["index", "build", str(trained[model]), "--collection", "split:test", "--out", str(index)]) == 0
    engine = SearchEngine.open(index, shortlist=5)
    return TestClient(create_app(engine, limits or Limits())), engine, index


def _png(size=(32, 32), colour=(200, 30, 30), mode="RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, colour if mode == "RGB" else 0).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("model", ["dual", "jgcar"])
def test_api_ranks_as_the_cli_does(trained, tmp_path, capsys, model):  # noqa: F811
    client, engine, index = _client(trained, tmp_path, model)
    for text in ("colour number 9", "a swatch called 24"):
        response = client.post("/search", json={"text": text, "k": 5, "shortlist": 5})
        assert response.status_code == 200
        api_hits = [(h["id"], round(h["score"], 5)) for h in response.json()["hits"]]
        capsys.readouterr()
        assert main(["search", str(index), "--text", text, "-k", "5", "--shortlist", "5", "--json"]) == 0
        cli_hits = [(h["id"], round(h["score"], 5)) for h in json.loads(capsys.readouterr().out)["hits"]]
        assert api_hits == cli_hits and len(api_hits) == 5
        assert response.json()["two_stage"] == (model == "jgcar")
    image = engine.index.sides["images"].entries[2].source
    with open(image, "rb") as stream:
        response = client.post("/search", data={"k": "4", "shortlist": "5"},
                               files={"image": ("query.png", stream, "image/png")})
    assert response.status_code == 200, response.text
    capsys.readouterr()
    assert main(["search", str(index), "--image", image, "-k", "4", "--shortlist", "5", "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)["hits"]
    assert [h["id"] for h in response.json()["hits"]] == [h["id"] for h in cli]
    assert all(h["source"] for h in response.json()["hits"])  # texts: the text itself


def test_bad_input_is_a_clean_4xx_and_the_server_keeps_serving(trained, tmp_path):  # noqa: F811
    client, engine, _ = _client(trained, tmp_path, "dual", Limits(max_upload_bytes=1_000_000,
                                                                  max_image_pixels=40_000_000))
    cases = [
        (client.post("/search", json={"text": ""}), 422, "query text is empty"),
        (client.post("/search", json={"text": "x" * 10_000_000}), 413, "over"),
        (client.post("/search", json={"text": "red", "k": 0}), 422, "k must be between 1 and 100"),
        (client.post("/search", json={"text": "red", "k": 1000}), 422, "k must be between 1 and 100"),
        (client.post("/search", json={"text": "red", "k": "many"}), 422, "k: Input should be a valid integer"),
        (client.post("/search", content=b"not json", headers={"content-type": "application/json"}), 422,
         "send a JSON object"),
        (client.post("/search", files={"image": ("a.png", b"this is no image", "image/png")}), 415,
         "not an image"),
        (client.post("/search", files={"image": ("big.png", b"0" * 1_000_001, "image/png")}), 413, "over 0 MB"),
        (client.post("/search", files={"image": ("huge.png", _png((20_000, 20_000), mode="1"), "image/png")}), 413,
         "megapixel"),
        (client.get("/items/no-such-item"), 404, "no item 'no-such-item'"),
        (client.get("/items/../../etc/passwd"), 404, ""),
        (client.get("/thumbnails/..%2F..%2Fetc%2Fpasswd"), 404, "no item"),
        (client.get("/static/..%2F..%2Fsearch%2Findex.py"), 404, ""),
        (client.post("/explain", json={"text": "red"}), 422, "name the indexed item"),
        (client.post("/explain", json={"item": "sq4#0", "text": "red"}), 400, "explain it with an image query"),
    ]
    for response, status, message in cases:
        assert response.status_code == status, (response.request.url, response.text[:300])
        assert message in response.text
    assert client.get("/health").json()["status"] == "ok"
    assert client.post("/search", json={"text": "red", "k": 3}).status_code == 200


def test_items_thumbnails_explain_and_page(trained, tmp_path):  # noqa: F811
    client, engine, _ = _client(trained, tmp_path, "jgcar")
    health = client.get("/health").json()
    assert health["items"] == {"images": 8, "texts": 16} and health["two_stage"] is True
    item = client.get("/items/sq4").json()
    assert item["side"] == "images" and item["thumbnail"] == "/thumbnails/sq4"
    assert client.get("/items/sq4%230").json()["text"] == "colour number 4"  # "#" URL-encoded
    thumbnail = client.get("/thumbnails/sq4")
    assert thumbnail.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(thumbnail.content)).size == (32, 32)
    explained = client.post("/explain", json={"item": "sq4", "text": "colour number 4"}).json()
    maps = explained["attention"]["maps"]
    regions = [m for m in maps.values() if "region" in m["grids"]]
    words = [m for m in maps.values() if "word" in m["labels"]]
    assert regions and regions[0]["grids"]["region"] == [7, 7]
    assert words and words[0]["labels"]["word"][1:4] == ["colour", "number", "4"]  # [CLS] colour number 4 [SEP]
    with open(engine.index.sides["images"].entries[0].source, "rb") as stream:
        by_image = client.post("/explain", data={"item": "sq4#0"}, files={"image": ("q.png", stream, "image/png")})
    assert by_image.status_code == 200 and by_image.json()["attention"]["maps"]
    page = client.get("/")
    assert page.status_code == 200 and '<script src="/static/app.js">' in page.text
    assert "http" not in page.text.replace("http-equiv", "")  # nothing from another host (no CDN)
    assert client.get("/static/app.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/openapi.json").json()["paths"].keys() >= {"/search", "/explain", "/health"}


@pytest.mark.parametrize("model", ["dual", "jgcar"])
def test_an_unreadable_query_is_flagged_in_the_api_the_cli_and_its_json(trained, tmp_path, capsys,  # noqa: F811
                                                                         model):
    client, _, index = _client(trained, tmp_path, model)
    for text, unreadable in (("colour number 9", False), ("狗", True), ("qwxzv blorf", True)):
        warning = client.post("/search", json={"text": text, "k": 3}).json()["warning"]
        capsys.readouterr()
        assert main(["search", str(index), "--text", text, "-k", "3", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["warning"] == warning
        assert (warning is not None) == unreadable, (text, warning)
        assert main(["search", str(index), "--text", text, "-k", "3"]) == 0
        assert ("warning: this run can hardly read the query" in capsys.readouterr().err) == unreadable
    made_up = client.post("/search", json={"text": "qwxzv blorf"}).json()["warning"]
    assert "glove knows 0 of its 2 word tokens" in made_up
