"""Does BSSAN's O2W half match texts to images? The spread of its score across texts and across
images, and of the two halves of eq. 13's first layer, on a trained run's validation split.

    python -m benchmarks probe bssan-o2w RUN [--images 20 --texts 100]

Prints: the std of f_o2w over texts (per image, averaged) and over images (per text, averaged);
the std of the first layer's object half ``W1^o o_j + b1`` and text half ``sum_k beta_j^k W1^s s_k``;
the mean largest attention weight of eq. 9 against the mean 1/length (uniform attention).
"""

from __future__ import annotations

import argparse
import json

import torch

from xmodal.eval.protocol import encode_split
from xmodal.models.base import take
from xmodal.trained import load_run


@torch.no_grad()
def probe(run_dir: str, n_images: int, n_texts: int) -> dict:
    run = load_run(run_dir).run
    model = run.model
    if not getattr(model, "use_o2w", False):
        raise SystemExit(f"{run_dir}: not a BSSAN run with an O2W network")
    images, texts = encode_split(model, run.data.split("val"), run.device)
    images, texts = take(images, slice(0, n_images)), model._cut(take(texts, slice(0, n_texts)))
    scores, beta = model.o2w_scores(images["object_queries"].unsqueeze(1), images["object_first"].unsqueeze(1),
                                    texts["states"].unsqueeze(0), texts["state_first"].unsqueeze(0),
                                    texts["lengths"].unsqueeze(0))  # [I, T], beta [I, T, P, L]
    text_half = torch.einsum("itpl,tlh->itph", beta, texts["state_first"])
    return {"score_std_over_texts": scores.std(1).mean().item(), "score_std_over_images": scores.std(0).mean().item(),
            "object_half_std": images["object_first"].std().item(), "text_half_std": text_half.std().item(),
            "largest_attention_weight": beta.max(-1).values.mean().item(),
            "uniform_weight": (1 / texts["lengths"].float()).mean().item()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks probe bssan-o2w")
    parser.add_argument("run")
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--texts", type=int, default=100)
    args = parser.parse_args(argv)
    print(json.dumps(probe(args.run, args.images, args.texts), indent=1))
