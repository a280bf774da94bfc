"""The field's named test protocols (issue 31): COCO 1K's five folds against a hand computation."""

from __future__ import annotations

import pytest
import torch

from doubles import Cosine
from test_feature_store import home  # noqa: F401  (the fixture: a private home, fake encoders)
from test_search_index import trained  # noqa: F401  (the fixture: trained dual and JGCAR runs)
from xmodal.cli import main
from xmodal.errors import XmodalError
from xmodal.eval.protocol import GroundTruth, evaluate_encoded, evaluate_folds, evaluate_protocol, folds
from xmodal.models.base import Rep


def case(confused_in_fold_b: bool) -> tuple[Rep, Rep, GroundTruth]:
    """4 images in 2 folds of 2, two texts each. Text 1 (image 0's) lies nearer image 2, in the other
    fold; with ``confused_in_fold_b`` text 7 (image 3's) lies nearer image 2, in its own fold."""
    images = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0.6, 0, 0, 0.8], [0, 0, 1.0, 0]])
    texts = images.repeat_interleave(2, dim=0).clone()
    texts[1] = torch.tensor([0.5, 0, 0, 0.866])  # cosine 0.5 with image 0, 0.99 with image 2
    if confused_in_fold_b:
        texts[7] = torch.tensor([0.55, 0, 0.3, 0.78])  # cosine 0.29 with image 3, 0.95 with image 2
    matches = torch.zeros(4, 8, dtype=torch.bool)
    matches[torch.arange(8) // 2, torch.arange(8)] = True
    return {"embedding": images}, {"embedding": texts}, GroundTruth(matches)


def test_each_fold_ranks_against_its_own_texts_and_the_folds_are_averaged():
    images, texts, truth = case(confused_in_fold_b=False)
    assert [(rows.tolist(), text_rows.tolist()) for rows, text_rows in folds(truth, 2)] == \
        [([0, 1], [0, 1, 2, 3]), ([2, 3], [4, 5, 6, 7])]
    whole = evaluate_encoded(Cosine(), images, texts, truth)
    assert whole["t2i"]["r@1"] == 87.5  # text 1 finds image 2 first: 7 of 8
    by_fold = evaluate_folds(Cosine(), images, texts, truth, 2)
    assert by_fold["t2i"]["r@1"] == 100.0  # image 2 is not in text 1's fold
    _, texts, truth = case(confused_in_fold_b=True)
    by_fold = evaluate_folds(Cosine(), images, texts, truth, 2)
    assert by_fold["t2i"]["r@1"] == (100.0 + 75.0) / 2  # fold B: text 7 finds image 2 first
    assert by_fold["t2i"]["meanr"] == (1.0 + (1 + 1 + 1 + 2) / 4) / 2
    assert by_fold["rsum"] == pytest.approx(sum(by_fold[d][f"r@{k}"] for d in ("i2t", "t2i") for k in (1, 5, 10)))


def test_one_fold_is_the_plain_protocol():
    images, texts, truth = case(confused_in_fold_b=True)
    assert evaluate_folds(Cosine(), images, texts, truth, 4) == evaluate_encoded(Cosine(), images, texts, truth)


def test_named_protocols_say_what_they_are_and_refuse_what_does_not_fit():
    images, texts, truth = case(confused_in_fold_b=False)
    with pytest.raises(XmodalError, match="folds of 1,000 images need a split of a multiple of 1,000 images; this one "
                                          "has 4"):
        evaluate_protocol(Cosine(), images, texts, truth, "coco-1k")
    named = evaluate_protocol(Cosine(), images, texts, truth, "flickr30k-1k")
    assert named["protocol"] == {"name": "flickr30k-1k",
                                 "warning": "flickr30k-1k is defined on 1,000 test images; this split has 4"}
    with pytest.raises(XmodalError, match="--protocol coco: choose one of plain, coco-1k, coco-5k, flickr30k-1k"):
        evaluate_protocol(Cosine(), images, texts, truth, "coco")


def test_cli_eval_names_the_protocol(trained, capsys):  # noqa: F811
    assert main(["eval", str(trained["dual"]), "--protocol", "flickr30k-1k"]) == 0
    out = capsys.readouterr().out
    assert "protocol flickr30k-1k" in out and "warning: flickr30k-1k is defined on 1,000 test images" in out
    assert main(["eval", str(trained["dual"]), "--protocol", "coco-1k"]) == 2
    assert "need a split of a multiple of 1,000 images; this one has 8" in capsys.readouterr().err


def test_a_split_too_large_for_memory_is_refused_before_the_work(monkeypatch):
    import numpy as np

    from xmodal.eval import protocol

    monkeypatch.setattr(protocol, "available_bytes", lambda device: 10 * 2**20)  # 10 MiB free
    reads = []

    def reader(rows: np.ndarray) -> Rep:
        reads.append(len(rows))
        return {"embedding": torch.zeros(len(rows), 2048)}  # 8 KiB a row: 5,000 rows want about 78 MiB

    with pytest.raises(XmodalError, match=r"encoding the 5,000 images of this split keeps 0\.01 MiB per item: about "
                                          r"0\.1 GiB .* has 0\.0 GiB free"):
        protocol._encode(lambda rep: rep, reader, 5000, torch.device("cpu"), 512, "images")
    assert reads == [512]  # one block read, not the split
    monkeypatch.setattr(protocol, "available_bytes", lambda device: None)  # unknown: no refusal
    encoded = protocol._encode(lambda rep: rep, reader, 600, torch.device("cpu"), 512, "images")
    assert encoded["embedding"].shape[0] == 600


def test_an_unknown_protocol_is_refused_before_any_data_is_read(trained, capsys):  # noqa: F811
    assert main(["eval", str(trained["dual"]), "--protocol", "coco1k"]) == 2
    assert "--protocol coco1k: choose one of plain, coco-1k, coco-5k, flickr30k-1k" in capsys.readouterr().err
