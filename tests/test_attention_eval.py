"""Attention statistics and the pointing game (xmodal.eval.attention), on hand-made maps and on a
model trained on mosaics of real images whose captions name what only one tile shows."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from xmodal.eval.attention import attention_statistics, cell_centres, point, pointing_game
from xmodal.losses.ranking import bidirectional_triplet
from xmodal.models.base import Attention, AttentionMap, EmbeddingModel, Params, RetrievalModel

TOP_LEFT, BOTTOM_RIGHT = (0.0, 0.0, 0.5, 0.5), (0.5, 0.5, 1.0, 1.0)


def region_map(weights: list[float], side: int = 4) -> AttentionMap:
    return AttentionMap(torch.tensor(weights), ("region",), {"region": (side, side)})


def test_cells_and_boxes_by_hand():
    centres = cell_centres(2, 3)
    assert torch.allclose(centres[4], torch.tensor([0.5, 0.75]))  # row 1, column 1 of a 2 x 3 grid
    weights = torch.zeros(16)
    weights[[0, 1, 4, 5]] = torch.tensor([0.1, 0.1, 0.1, 0.3])  # the top-left 2 x 2 cells of a 4 x 4 grid
    weights[15] = 0.4
    assert point(weights, (4, 4), TOP_LEFT) == (False, pytest.approx(0.6), 0.25)  # the largest is cell 15
    assert point(weights, (4, 4), BOTTOM_RIGHT) == (True, pytest.approx(0.4), 0.25)


def test_pointing_game_by_hand():
    hit = region_map([0.0] * 15 + [1.0])  # all weight on the bottom-right cell
    spread = region_map([1 / 16] * 16)  # uniform: argmax is cell 0 (top left), mass = the box's share
    explained = [((0, 0), Attention({"image": hit})), ((0, 1), Attention({"image": spread})),
                 ((0, 2), Attention({"image": hit}))]
    boxes = np.array([BOTTOM_RIGHT, BOTTOM_RIGHT, TOP_LEFT])
    result = pointing_game(explained, boxes)["image"]
    assert result["accuracy"] == pytest.approx(1 / 3)  # only the first points into its box
    assert result["mass"] == pytest.approx((1.0 + 0.25 + 0.0) / 3) and result["chance"] == 0.25
    assert result["pairs"] == 3 and result["combined"] == "the map itself"
    # One map per word: the words' distributions are averaged before pointing.
    per_word = AttentionMap(torch.tensor([[1.0] + [0.0] * 15, [0.0] * 15 + [1.0], [0.0] * 15 + [1.0]]),
                            ("word", "region"), {"region": (4, 4)})
    combined = pointing_game([((0, 0), Attention({"w2r": per_word}))], np.array([BOTTOM_RIGHT]))["w2r"]
    assert combined["accuracy"] == 1.0 and combined["mass"] == pytest.approx(2 / 3)
    assert combined["combined"] == "the mean over its word positions"
    assert pointing_game(explained, np.full((3, 4), np.nan)) == {}  # no box, nothing to score


def test_attention_statistics_by_hand():
    uniform = AttentionMap(torch.full((8,), 1 / 8), ("region",))
    peaked = AttentionMap(torch.tensor([1.0] + [0.0] * 7), ("region",))
    two = AttentionMap(torch.tensor([[0.5, 0.5, 0.0, 0.0]]), ("word", "region"))
    stats = attention_statistics([Attention({"image": uniform, "words": two}), Attention({"image": peaked})])
    assert stats["image"]["entropy"] == pytest.approx(0.5) and stats["image"]["pairs"] == 2
    assert stats["image"]["max_weight"] == pytest.approx((1 / 8 + 1) / 2)
    assert stats["image"]["uniform_weight"] == pytest.approx(1 / 8)
    assert stats["words"]["entropy"] == pytest.approx(math.log(2) / math.log(4))
    single = AttentionMap(torch.ones(1), ("word",))  # one position: no distribution to speak of
    assert attention_statistics([Attention({"text": single})]) == {}


class PointerParams(Params):
    dim: int = 32
    sharpness: float = 10.0


class Pointer(RetrievalModel):
    """The smallest text-to-region attention there is (SCAN's t2i in spirit): a caption's mean word
    vector attends over the regions by scaled cosine, and the score is the cosine of the attended
    regions with it. Defined here, not registered: the test is of the pointing game, not of a paper."""

    name, label, description = "pointer", "pointer", "test model: caption-to-region attention"
    image_inputs, text_inputs = ("regions",), ("words",)
    Params = PointerParams

    def __init__(self, spec, params):
        super().__init__(spec, params)
        from xmodal.nn.word_input import WordInput

        self.regions = nn.Linear(spec.image_dim, params.dim)
        self.words = WordInput(spec, "pointer")
        self.text = nn.Linear(self.words.dim, params.dim)

    def encode_images(self, images):
        regions = nn.functional.normalize(self.regions(images["regions"]), dim=-1)
        return {"regions": regions, "embedding": regions.mean(1)}

    def encode_texts(self, texts):
        vectors, lengths = self.words(texts)
        mask = (torch.arange(vectors.shape[1]) < lengths[:, None]).float()
        mean = (vectors * mask[..., None]).sum(1) / lengths.clamp_min(1)[:, None]
        return {"query": nn.functional.normalize(self.text(mean), dim=-1)}

    def _weights(self, images, texts):
        return torch.softmax(self.params.sharpness * torch.einsum("ird,jd->ijr", images["regions"], texts["query"]), -1)

    def similarity(self, images, texts):
        attended = torch.einsum("ijr,ird->ijd", self._weights(images, texts), images["regions"])
        return nn.functional.cosine_similarity(attended, texts["query"][None], dim=-1)

    def loss(self, batch):
        scores = self.similarity(self.encode_images(batch.images), self.encode_texts(batch.texts))
        # Summed over the negatives (not the hardest): another mosaic may show the same colour.
        return {"total": bidirectional_triplet(scores, batch.positives(), margin=0.2, hardest=False)}

    def explain(self, images, texts):
        side = self.spec.grid_side
        return Attention({"image": AttentionMap(self._weights(images, texts)[0, 0], ("region",),
                                                {"region": (side, side)})})


@pytest.mark.slow
def test_a_model_with_region_attention_points_at_the_tile_its_caption_names(tmp_path):
    """Mosaics of real (generated) images through the real encoders: the caption names a colour that
    only its tile shows, so working region attention finds that tile; ``xmodal eval`` reports it."""
    from test_mosaic import colour_collection
    from xmodal.api import TrainedRun
    from xmodal.config import load_config
    from xmodal.factory import build_data, make_run
    from xmodal.training.trainer import train_run

    source = colour_collection(tmp_path / "colours", {"train": 64, "val": 8, "test": 32})
    config = load_config(None, base={
        "model": {"name": "dual"}, "data": {"dataset": "mosaic", "path": str(source), "source": "csv", "tile": 64,
                                           "train_groupings": 4, "resolution": 128, "image_input": "regions",
                                           "text_input": "words"},
        "optim": {"name": "adam", "lr": 0.003}, "train": {"epochs": 25, "batch_size": 32, "seed": 0}})
    data = build_data(config, torch.device("cpu"))
    torch.manual_seed(0)
    run = make_run(config, data, Pointer(data.spec, PointerParams()))
    train_run(run, tmp_path / "run")
    metrics = TrainedRun.of(run, tmp_path / "run").evaluate("test")
    pointing = metrics["pointing"]["image"]
    assert pointing["pairs"] == 32 and pointing["chance"] == 0.25
    assert pointing["accuracy"] >= 0.8 and pointing["mass"] >= 0.6, pointing  # chance: 0.25 each
    assert metrics["attention"]["image"]["entropy"] < 0.7  # peaked, not uniform
    assert isinstance(run.model, RetrievalModel) and not isinstance(run.model, EmbeddingModel)
