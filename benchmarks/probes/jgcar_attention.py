"""Does JGCAR's co-attention add anything over its global cosine? Measures on a trained run's test split.

    python -m benchmarks probe jgcar-attention RUN [RUN ...] [--k 100] [--json OUT.json]

For each run (best checkpoint), over every test image x text pair:

- entropy of a^v over regions / log N and of a^s over words / log T (1 = uniform; texts of one
  word are left out of a^s), mean over all pairs and over the matching pairs; mean max a^v;
- per query, the Spearman correlation between the co-attentive score (eq. 15) and the global
  cosine (first stage), over the whole gallery and over the global top-K shortlist;
- how many top-10 lists the K rerank changes (ordered list, set, items replaced);
- rsum of stage 1 (global cosine), two-stage (K) and exhaustive co-attentive ranking;
- scales, on the first 16 images x 32 texts: mean |V|, |S| (valid words), |A| (eq. 11), |W_s S A|
  and the fraction of it past |2| (eq. 12's tanh saturated), the spread (std over regions) of
  the region logits of eq. 13, and ||w_hv|| (1 at initialisation).

With uniform attention v_bar and s_bar are the mean-pooled V and S, so eq. 15 *is* the global
cosine: a relative entropy near 1 and Spearman near 1 mean the rerank is a no-op.

``--sharpen 0 1 2 4 8``: rsum of two-stage search with eq. 13's logits multiplied by each factor tau
(w_hv and w_hs scaled; 0 is uniform attention, i.e. stage 1; 1 the trained model). If the learned
logits ranked regions and words usefully but too flatly, sharper attention would rank better.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

import torch
from torch import Tensor

from xmodal.eval.diagnostics import relative_entropy, spearman_rows, topk_changes
from xmodal.eval.metrics import direction_metrics
from xmodal.eval.protocol import encode_split
from xmodal.eval.two_stage import cosine_scores, two_stage_scores
from xmodal.nn.coattention import Attended
from xmodal.trained import load_run


def _entropy(weights: Tensor) -> Tensor:
    return -(weights * weights.clamp_min(1e-30).log()).sum(-1)


def _pair_stats(attended: Attended) -> tuple[Tensor, ...]:
    """Per pair: score, H(a^v) / log N, H(a^s) (un-normalised: texts are trimmed to their group), max a^v."""
    return (attended.scores(), relative_entropy(attended.image_weights), _entropy(attended.text_weights),
            attended.image_weights.amax(-1))


def _scales(model, images: dict, texts: dict) -> dict[str, float]:
    """The scale figures of the module docstring (eqs. 11-13 recomputed on a small block)."""
    images = {key: value[:16] for key, value in images.items()}
    texts = {key: value[:32] for key, value in texts.items()}
    image_side, text_side = model._sides(images, texts)
    image_side, text_side = image_side.unsqueeze(1), text_side.unsqueeze(0)
    affinity = torch.einsum("...td,...nd->...tn", text_side.keys, image_side.keys)
    text_in_regions = torch.einsum("...tn,...tl->...nl", affinity, text_side.projected)
    logits = (torch.tanh(text_in_regions) * image_side.gate).sum(-1)
    valid = text_side.mask.expand(affinity.shape[:-1])
    return {"abs_V": images["regions"].abs().mean().item(),
            "abs_S": _masked_abs(texts["words"], texts["lengths"]),
            "abs_A": affinity.abs()[valid].mean().item(), "abs_WsSA": text_in_regions.abs().mean().item(),
            "saturated": (text_in_regions.abs() > 2).float().mean().item(),
            "logit_std": logits.std(-1).mean().item(), "norm_w_hv": model.coattention.image_score.norm().item()}


def _masked_abs(words: Tensor, lengths: Tensor) -> float:
    mask = torch.arange(words.shape[1]) < lengths[:, None]
    return words[mask].abs().mean().item()


def _shortlist_spearman(first: Tensor, second: Tensor, k: int) -> Tensor:
    shortlist = first.topk(min(k, first.shape[1]), dim=1).indices
    return spearman_rows(first.gather(1, shortlist), second.gather(1, shortlist))


def _two_stage(first: Tensor, second: Tensor, k: int) -> Tensor:
    """Rows reranked by ``second`` within ``first``'s top k, the rest below in ``first``'s order."""
    shortlist = first.topk(min(k, first.shape[1]), dim=1).indices
    offset = first.max() - second.min() + 1.0
    return (first - offset).scatter(1, shortlist, second.gather(1, shortlist))


def _nanmean(values: Tensor) -> float:
    values = values[~values.isnan()]
    return values.mean().item() if len(values) else math.nan


@torch.no_grad()
def diagnose(run_dir: Path, k: int = 100) -> dict:
    """The figures of this module's docstring for one run."""
    run = load_run(run_dir).run
    model, split = run.model, run.data.split("test")
    if getattr(model, "coattention", None) is None:
        raise SystemExit(f"{run_dir}: not a co-attentive JGCAR run (mode {model.params.mode!r})")
    images, texts = encode_split(model, split, run.device)
    sides = model._sides(images, texts)
    scores, image_rel, text_h, image_max = model.coattention.all_pairs(*sides, _pair_stats)
    lengths = texts["lengths"].to(scores.dtype)
    text_rel = torch.where(lengths > 1, text_h / lengths.clamp_min(2).log(), torch.full_like(text_h, math.nan))
    first = cosine_scores(model.embed(images), model.embed(texts))  # [I, T] global cosine
    truth = split.ground_truth().bool()
    result = {"run": str(run_dir), "regions": images["regions"].shape[1],
              "entropy_v_all": image_rel.mean().item(), "entropy_v_match": image_rel[truth].mean().item(),
              "entropy_s_all": _nanmean(text_rel), "entropy_s_match": _nanmean(text_rel[truth]),
              "max_v_all": image_max.mean().item(), "max_v_match": image_max[truth].mean().item()}
    for direction, a, b in (("i2t", first, scores), ("t2i", first.T, scores.T)):
        result[f"spearman_all_{direction}"] = _nanmean(spearman_rows(a, b))
        result[f"spearman_top{k}_{direction}"] = _nanmean(_shortlist_spearman(a, b, k))
        changes = topk_changes(a, _two_stage(a, b, k), 10)
        result |= {f"top10_{key}_{direction}": value for key, value in changes.items()}
    gt = split.ground_truth()
    result["rsum_stage1"] = direction_metrics(first, first, gt)["rsum"]
    result[f"rsum_two_stage{k}"] = direction_metrics(_two_stage(first, scores, k), _two_stage(first.T, scores.T, k).T,
                                                     gt)["rsum"]
    result["rsum_exhaustive"] = direction_metrics(scores, scores, gt)["rsum"]
    result |= _scales(model, images, texts)
    return result


@torch.no_grad()
def sharpening(run_dir: Path, factors: list[float], k: int = 100) -> dict[float, float]:
    """Test rsum of two-stage search (K = ``k``) with eq. 13's logits scaled by each factor."""

    run = load_run(run_dir).run
    model, split = run.model, run.data.split("test")
    attention = model.coattention
    trained = attention.image_score.clone(), attention.text_score.clone()
    result = {}
    try:
        for factor in factors:
            attention.image_score.copy_(trained[0] * factor)
            attention.text_score.copy_(trained[1] * factor)
            images, texts = encode_split(model, split, run.device)  # the gates hold w_h: encode again
            result[factor] = direction_metrics(*two_stage_scores(model, images, texts, k), split.ground_truth())["rsum"]
    finally:
        attention.image_score.copy_(trained[0])
        attention.text_score.copy_(trained[1])
    return result


ROWS = [("entropy a^v / log N, all pairs", "entropy_v_all"), ("entropy a^v / log N, matching pairs", "entropy_v_match"),
        ("max a^v, all pairs (uniform = 1/N)", "max_v_all"), ("entropy a^s / log T, all pairs", "entropy_s_all"),
        ("entropy a^s / log T, matching pairs", "entropy_s_match")]


SCALE_ROWS = [("mean abs V", "abs_V"), ("mean abs S (valid words)", "abs_S"), ("mean abs A (eq. 11)", "abs_A"),
              ("mean abs W_s S A (eq. 12, inside tanh)", "abs_WsSA"), ("fraction of W_s S A past abs 2", "saturated"),
              ("std of region logits (eq. 13) per pair", "logit_std"), ("norm of w_hv (1 at init)", "norm_w_hv")]


def table(results: list[dict], k: int) -> str:
    rows = ROWS + [(f"Spearman(co-att, global) {d}, whole gallery", f"spearman_all_{d}") for d in ("i2t", "t2i")]
    rows += [(f"Spearman(co-att, global) {d}, top {k}", f"spearman_top{k}_{d}") for d in ("i2t", "t2i")]
    rows += [(f"top-10 lists changed by the rerank {d} ({key})", f"top10_{key}_{d}")
             for d in ("i2t", "t2i") for key in ("order", "set", "replaced")]
    rows += [("rsum stage 1 (global cosine)", "rsum_stage1"), (f"rsum two-stage K = {k}", f"rsum_two_stage{k}"),
             ("rsum exhaustive co-attentive", "rsum_exhaustive")]
    rows += [(label, key) for label, key in SCALE_ROWS if all(key in r for r in results)]
    lines = ["| measure | " + " | ".join(Path(r["run"]).name for r in results) + " |",
             "| --- " * (len(results) + 1) + "|"]
    for label, key in rows:
        lines.append(f"| {label} | " + " | ".join(f"{r[key]:.3f}" if abs(r[key]) < 10 else f"{r[key]:.1f}"
                                                  for r in results) + " |")
    if len(results) > 1 and any(key.startswith("rsum") for _, key in rows):
        lines.append(f"\n(mean rsum two-stage - stage 1: "
                     f"{statistics.mean(r[f'rsum_two_stage{k}'] - r['rsum_stage1'] for r in results):.1f})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks probe jgcar-attention",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--sharpen", type=float, nargs="+", metavar="TAU",
                        help="only the sharpening probe: two-stage rsum with eq. 13's logits times each TAU")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.sharpen:
        print("| run | " + " | ".join(f"tau {tau:g}" for tau in args.sharpen) + " |")
        print("| --- " * (len(args.sharpen) + 1) + "|")
        for run in args.runs:
            rsums = sharpening(run, args.sharpen, args.k)
            print(f"| {run.name} | " + " | ".join(f"{rsums[tau]:.1f}" for tau in args.sharpen) + " |")
        return
    results = [diagnose(run, args.k) for run in args.runs]
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    print(table(results, args.k))
