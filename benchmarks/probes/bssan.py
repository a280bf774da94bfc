"""Why BSSAN learns or does not (issue 26): gradients, saturation, attention and where its score's variance lies.

    python -m benchmarks probe bssan RUN [--batches 8] [--init]

On a trained BSSAN run (``--init``: the same model freshly initialised with the run's seed, what
training starts from), prints JSON with:

- ``gradients``: the gradient norm of each top-level module for the training loss (``total``, and
  the BSSAN objective alone), before any clipping, averaged over the first ``--batches`` training
  batches of epoch 1; the run's ``train.grad_clip`` and how often the total norm exceeds it;
- ``w2r`` / ``o2w``: on the validation split's matching pairs, the bilinear logit before eq. 2's
  (eq. 10's) tanh: its std and the share beyond |2| (where tanh's gradient is under 0.07); the
  attention's relative entropy (1 = uniform) and largest weight against uniform; how much of the
  W2R LSTM's gate input comes from the attended regions and how much from the word (std of each
  part), and of the O2W MLP's first layer from the object and from the attended words;
- ``scores``: for the full score (eq. 19) and each branch alone, the exhaustive validation rsum
  and the split of the score matrix's variance into an image effect, a text effect and their
  interaction (:func:`xmodal.eval.diagnostics.score_variance_split`).
"""

from __future__ import annotations

import argparse
import json
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch

from xmodal.eval.diagnostics import module_grad_norms, relative_entropy, score_variance_split
from xmodal.eval.metrics import evaluate_retrieval
from xmodal.eval.protocol import GroundTruth, encode_split, score_matrix
from xmodal.models.base import take
from xmodal.nn.pooling import length_mask
from xmodal.trained import load_run
from xmodal.training.trainer import epoch_order


def gradient_figures(model, train, config, batches: int) -> dict:
    order = epoch_order(train.n_texts, config.train.seed, 0)
    size = config.train.batch_size
    model.train()
    sums: dict[str, dict[str, float]] = {"total": {}, "bssan": {}}
    over = 0
    for number in range(batches):
        batch = train.pair_batch(order[number * size : (number + 1) * size])
        terms = model.loss(batch)
        norms = {"bssan": module_grad_norms(model, terms["bssan"], retain_graph=True),
                 "total": module_grad_norms(model, terms["total"])}
        for term, per_module in norms.items():
            for name, norm in per_module.items():
                sums[term][name] = sums[term].get(name, 0.0) + norm / batches
        over += norms["total"]["total"] > config.train.grad_clip > 0
    model.eval()
    return {"per_module": sums, "clip": config.train.grad_clip, "batches_over_clip": f"{over} of {batches}"}


def _logit_figures(pre_tanh: torch.Tensor, weights: torch.Tensor, queries: torch.Tensor, keys: torch.Tensor) -> dict:
    """``pre_tanh``/``weights`` [n, Q, K]; ``queries`` [n, Q] marks the real queries (words or objects),
    ``keys`` [n, K] the real keys (regions, or words)."""
    valid = (queries.unsqueeze(-1) & keys.unsqueeze(1)).expand_as(pre_tanh)
    kept = weights[queries]  # [m, K]
    key_mask = keys.unsqueeze(1).expand(*queries.shape, keys.shape[-1])[queries]
    return {"pre_tanh_std": float(pre_tanh[valid].std()),
            "share_beyond_2": float((pre_tanh[valid].abs() > 2).float().mean()),
            "relative_entropy": float(relative_entropy(kept, key_mask).nanmean()),
            "largest_weight": float(kept.max(-1).values.mean()),
            "uniform_weight": float((1 / key_mask.sum(-1).float()).mean())}


@torch.no_grad()
def attention_figures(model, images, texts, text_items: np.ndarray, n: int = 500) -> dict:
    """Logits and attention of the first ``n`` matching (image, text) pairs of the split."""
    picked = np.arange(min(n, len(text_items)))
    image, text = take(images, torch.as_tensor(text_items[picked])), model._cut(take(texts, torch.as_tensor(picked)))
    lengths = text["lengths"]
    word_mask = length_mask(lengths, text["lengths"].max().item())
    figures = {}
    if model.use_w2r:
        attention = model.w2r_attention
        pre = attention.pre_tanh(text["words"], image["region_keys"])
        weights = attention.weights(attention.logits(text["words"], image["region_keys"]))
        regions = torch.ones(pre.shape[0], pre.shape[-1], dtype=torch.bool)
        figures["w2r"] = _logit_figures(pre, weights, word_mask, regions)
        # Suspect 4: the LSTM's gate pre-activations, W_ih [u_k; t_k], split into the attended regions'
        # part and the word's part (eq. 3 and the concatenation c_k = [u_k; t_k]).
        lstm = model.w2r_lstm
        region_part = torch.einsum("nlr,nrg->nlg", weights, image["region_gates"])[word_mask]
        word_part = (text["word_gates"] - lstm.bias_ih_l0 - lstm.bias_hh_l0)[word_mask]
        figures["w2r"] |= {"gate_std_from_regions": float(region_part.std()),
                           "gate_std_from_words": float(word_part.std())}
    if model.use_o2w:
        attention = model.o2w_attention
        pre = attention.pre_tanh(image["object_queries"], text["states"])
        weights = attention.weights(attention.logits(image["object_queries"], text["states"]), word_mask)
        objects = torch.ones(pre.shape[:2], dtype=torch.bool)
        figures["o2w"] = _logit_figures(pre, weights, objects, word_mask)
        # The first layer of eq. 13 on [o_j; u_j]: its object half against its attended-words half.
        text_half = torch.einsum("npl,nlh->nph", weights, text["state_first"])
        figures["o2w"] |= {"first_layer_std_from_objects": float(image["object_first"].std()),
                           "first_layer_std_from_words": float(text_half.std())}
    return figures


@contextmanager
def branch(model, name: str) -> Iterator[None]:
    """Score with one branch of eq. 19 alone (``w2r``: f_w2r; ``o2w``: f_o2w), or ``full``."""
    kept = model.use_w2r, model.use_o2w
    if name == "w2r":
        model.use_o2w = False
    elif name == "o2w":
        model.use_w2r = False
    try:
        yield
    finally:
        model.use_w2r, model.use_o2w = kept


@torch.no_grad()
def score_figures(model, images, texts, truth: GroundTruth) -> dict:
    names = ["full"] + [name for name, used in (("w2r", model.use_w2r), ("o2w", model.use_o2w)) if used]
    figures = {}
    for name in names if len(names) > 2 else names[:1]:
        with branch(model, name):
            scores = score_matrix(model, images, texts)
        metrics = evaluate_retrieval(scores, gt=truth.matches)
        figures[name] = {"rsum": metrics["rsum"], "variance": score_variance_split(scores),
                         "std": float(scores.std())}
    return figures


def probe(run_dir: str, batches: int, init: bool) -> dict:
    trained = load_run(run_dir)
    run, config = trained.run, trained.config
    model = run.model.cpu()
    if init:
        torch.manual_seed(config.train.seed)
        fresh = type(model)(model.spec, model.params)
        fresh.words = model.words  # the same (frozen) word vectors
        model = fresh
    model.eval()
    result = {"run": str(run_dir), "model": config.model.name, "checkpoint": "initialised" if init else "best"}
    result["gradients"] = gradient_figures(model, run.data.split("train"), config, batches)
    val = run.data.split("val")
    images, texts = encode_split(model, val, torch.device("cpu"))
    truth = GroundTruth.of(val)
    result |= attention_figures(model, images, texts, truth.text_items())
    result["scores"] = score_figures(model, images, texts, truth)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks probe bssan")
    parser.add_argument("run")
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--init", action="store_true", help="measure the freshly initialised model instead")
    args = parser.parse_args(argv)
    print(json.dumps(probe(args.run, args.batches, args.init), indent=1))
