"""ConSE (zero-shot, issue 30): eq. 1 on hand-made inputs, a run with no training data, a photo folder searched."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from test_feature_store import colour, home  # noqa: F401  (the fixture: a private home, fake encoders)
from test_search_browser import browser_page, serving
from xmodal.api import load_run
from xmodal.cli import main
from xmodal.errors import XmodalError
from xmodal.features.inputs import make_spec
from xmodal.models.conse import class_name_vectors, imagenet_class_names, imagenet_classifier
from xmodal.models.registry import create_model
from xmodal.search.engine import SearchEngine

SPEC = make_spec({"global": {"dim": 1280}}, {"global": {"dim": 384}})
RETRIEVER, TOILET_PAPER = 207, 999  # ImageNet-1k class ids


def features_of(*classes: int, length: float = 3.0) -> torch.Tensor:
    """Pooled features the classifier reads as ``classes`` (each its head row at ``length``), one per row:
    at 3 the class is first with 0.3-0.6 of the probability, its neighbours (other dogs) next."""
    weight, _ = imagenet_classifier()
    return torch.stack([length * weight[c] / weight[c].norm() for c in classes])


def test_the_image_is_its_top_classes_names_mixed_by_their_probabilities():
    model = create_model("conse", SPEC, {"top": 2})
    images = model.encode_images({"features": features_of(RETRIEVER, TOILET_PAPER)})
    assert images["classes"][:, 0].tolist() == [RETRIEVER, TOILET_PAPER]
    weight, bias = imagenet_classifier()
    probabilities = torch.softmax(features_of(RETRIEVER) @ weight.T + bias, dim=-1)[0]
    top, classes = probabilities.topk(2)
    vectors = torch.nn.functional.normalize(class_name_vectors(), dim=-1)
    expected = (top[0] * vectors[classes[0]] + top[1] * vectors[classes[1]]) / top.sum()  # eq. 1, 1/Z
    torch.testing.assert_close(images["embedding"][0], expected)
    assert imagenet_class_names()[RETRIEVER] == "Golden Retriever"
    attention = model.explain(images, {"embedding": torch.zeros(1, 384)})
    assert attention.maps["image"].labels["concept"][0] == "Golden Retriever"


def test_a_larger_top_t_or_temperature_spreads_the_weights():
    features = {"features": features_of(RETRIEVER)}
    peaked = create_model("conse", SPEC, {"top": 1}).encode_images(features)
    wide = create_model("conse", SPEC, {"top": 10, "temperature": 4.0}).encode_images(features)
    assert peaked["class_weights"][0].tolist() == [1.0]
    assert wide["class_weights"][0, 0] < 0.5 and wide["class_weights"][0].sum() == pytest.approx(1.0)


def test_features_that_are_not_effnet_and_minilm_are_refused():
    with pytest.raises(XmodalError, match="conse reads EfficientNet-Lite0's pooled features .* 128-d and 10-d"):
        create_model("conse", make_spec({"global": {"dim": 128}}, {"global": {"dim": 10}}))


@pytest.mark.slow
def test_real_texts_find_the_class_they_name():
    """Real MiniLM: a text naming a dog scores the retriever image above the toilet paper one, and back."""
    model = create_model("conse", SPEC)
    images = model.encode_images({"features": features_of(RETRIEVER, TOILET_PAPER)})
    from xmodal.encoders.minilm import MiniLM

    texts = {"embedding": MiniLM().encode(["a golden dog playing fetch", "a roll of toilet paper"]).sentence}
    scores = model.similarity(images, texts)
    assert scores[0, 0] > scores[1, 0] and scores[1, 1] > scores[0, 1]


def test_a_photo_folder_is_indexed_and_searched_with_no_run(home, tmp_path, capsys):  # noqa: F811
    photos = tmp_path / "photos"
    photos.mkdir()
    for index in range(5):
        Image.new("RGB", (48, 48), colour(index)).save(photos / f"p{index}.jpg")
    index = tmp_path / "index"
    assert main(["index", "build", "--model", "conse", "--collection", str(photos), "--out", str(index)]) == 0
    built = capsys.readouterr().out
    assert "5 images, 0 texts" in built and "with conse (" in built and "zero-shot" in built
    run = load_run(home / "zero-shot" / "conse-224px")
    assert run.model.name == "conse" and run.pipeline.settings.dataset.startswith("conse (zero-shot")
    with pytest.raises(XmodalError):
        _ = run.dataset  # no training data behind it
    hits = SearchEngine.open(index).search_text("a red square", k=3)
    assert len(hits) == 3 and all(hit.id.startswith("p") for hit in hits)
    assert main(["search", str(index), "--text", "a red square", "--json"]) == 0
    for argv, message in ((["--model", "conse", "--collection", "split:test"], "a zero-shot model has no dataset"),
                          (["--model", "dual", "--collection", str(photos)], "only a model that needs no training"),
                          ([str(tmp_path / "run"), "--model", "conse", "--collection", str(photos)], "not both")):
        assert main(["index", "build", *argv, "--out", str(tmp_path / "other")]) == 2
        assert message in capsys.readouterr().err


@pytest.mark.slow
def test_the_page_names_the_classes_behind_a_result(home, tmp_path):  # noqa: F811
    photos = tmp_path / "photos"
    photos.mkdir()
    for index in range(3):
        Image.new("RGB", (48, 48), colour(index)).save(photos / f"p{index}.jpg")
    assert main(["index", "build", "--model", "conse", "--collection", str(photos), "--out", str(tmp_path / "i")]) == 0
    with serving(tmp_path / "i") as url, browser_page() as (_, page, errors):
        page.goto(url + "/")
        page.wait_for_function("document.getElementById('status').textContent.includes('conse')")
        page.fill("#text", "a red square")
        page.click("#go")
        page.wait_for_selector(".hit img")
        page.locator(".hit").first.click()
        page.wait_for_selector(".bars .bar-name")
        names = page.locator(".bars .bar-name").all_text_contents()
    assert not errors, errors
    assert len(names) == 10 and all(name.rsplit(" ", 1)[0] in imagenet_class_names() for name in names)
