"""Another run's global vectors as the first stage of two-stage ranking (``xmodal eval --first-stage``):
stage 1 ranks by them and not by the model's own, and a first stage that does not fit is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from test_mosaic import colour_collection
from test_portable_runs import small_config
from test_two_stage import ReversedModel
from xmodal.cli import main
from xmodal.eval.two_stage import two_stage_search, with_first_stage
from xmodal.factory import train_config
from xmodal.models.base import Rep


class NoGlobalVector(ReversedModel):
    def embed(self, rep: Rep) -> None:
        return None


def test_given_vectors_shortlist_in_place_of_the_models_own():
    images = {"v": torch.tensor([[1.0, 0.0]])}
    texts = {"v": torch.tensor([[1.0, 0.1], [0.0, 1.0], [1.0, 0.5], [1.0, -0.2]])}
    own = two_stage_search(ReversedModel(), images, texts, k=2, direction="i2t")
    assert own.indices.tolist() == [[3, 0]]  # shortlist {0, 3} by the model's cosine
    # A first stage that prefers texts 1 and 2: they are the shortlist, reranked by -cosine (2 is .894, 1 is 0).
    other_images = with_first_stage(images, torch.tensor([[0.0, 1.0]]))
    other_texts = with_first_stage(texts, torch.tensor([[0.0, -1.0], [0.1, 1.0], [0.0, 0.9], [1.0, 0.0]]))
    for model in (ReversedModel(), NoGlobalVector()):  # a model with no vector of its own works too
        result = two_stage_search(model, other_images, other_texts, k=2, direction="i2t")
        assert result.indices.tolist() == [[1, 2]]
        assert result.score_matrix()[0].argsort(descending=True).tolist() == [1, 2, 3, 0]
    with pytest.raises(ValueError, match="2 first-stage vectors for 4 items"):
        with_first_stage(texts, torch.zeros(2, 2))


def _eval(capsys, *args: str) -> dict:
    capsys.readouterr()
    assert main(["eval", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def recalls(metrics: dict) -> dict:
    return {direction: {key: value for key, value in metrics[direction].items() if key.startswith("r@")}
            for direction in ("i2t", "t2i")}


def test_a_shortlist_of_one_ranks_exactly_as_the_first_stage_run(tmp_path: Path, monkeypatch, capsys):
    """With K = 1 the reranked shortlist is the first stage's top candidate and the rest follow in its
    order: every recall is the first-stage run's own exhaustive recall."""
    monkeypatch.setenv("XMODAL_HOME", str(tmp_path / "home"))
    colour_collection(tmp_path / "colours", {"train": 24, "val": 8, "test": 8})
    runs = {model: tmp_path / model for model in ("scan", "cca")}
    for model, folder in runs.items():
        train_config(small_config(tmp_path, model, "tokens" if model == "scan" else "global"), folder)
    first = _eval(capsys, str(runs["cca"]))
    shortlisted = _eval(capsys, str(runs["scan"]), "--shortlist", "1", "--first-stage", str(runs["cca"]))
    assert recalls(shortlisted) == recalls(first)
    assert shortlisted["ranking"] == {"method": "two-stage", "k": 1, "first_stage": f"cca ({runs['cca']})"}
    assert main(["eval", str(runs["scan"]), "--shortlist", "1", "--first-stage", str(runs["cca"])]) == 0
    assert f"two-stage K=1, first stage cca ({runs['cca']})" in capsys.readouterr().out

    assert main(["eval", str(runs["scan"]), "--first-stage", str(runs["cca"])]) == 2
    assert "give --shortlist K > 0" in capsys.readouterr().err
    # A first stage trained on other items is refused, naming both counts.
    colour_collection(tmp_path / "other", {"train": 24, "val": 8, "test": 6}, seed=1)
    other = small_config(tmp_path, "cca", "global")
    other.data.path = str(tmp_path / "other" / "colours.csv")
    train_config(other, tmp_path / "cca-other")
    assert main(["eval", str(runs["scan"]), "--shortlist", "1", "--first-stage", str(tmp_path / "cca-other")]) == 2
    assert "other test items than the run it shortlists for (6 against 8" in capsys.readouterr().err
