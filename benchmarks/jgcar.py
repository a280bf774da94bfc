"""JGCAR's variants beside `dual` on emoji or flickr8k, test split, seeds 0-2 (paper Tables 1-3).

    XMODAL_HOME=/tmp/xh-jgcar .venv/bin/python benchmarks/jgcar.py [--dataset emoji|flickr8k] \\
        [--config configs/jgcar/emoji-cpu.yaml] [--seeds 0 1 2] [--variants GRL SGCAR JGCAR JGCAR-v1 JGCAR-v2] \\
        [--text words|tokens] [--no-dual] [--out /tmp/jgcar-bench] [--set train.epochs=10 --set KEY=VALUE ...]

Each variant trains with ``--config`` plus its overrides (table below); the best checkpoint
(validation rsum) is then scored on the test split two ways: the paper's two-stage retrieval
(global top K = 100, co-attentive rerank; section 2.4) and exhaustive co-attentive ranking of
every pair; ``stage1`` keeps the first stage alone (global cosine), so a table can show what the
rerank adds over its own shortlist. ``dual`` trains with configs/dual/<dataset>.yaml. ``--config``
defaults to configs/jgcar/emoji-cpu.yaml (emoji) or configs/jgcar/flickr8k.yaml (flickr8k); on
flickr8k J2/J3 need labels it has not, so the JGCAR rows there are JGCAR-v1 unless a variant says
otherwise. Per-run metrics are kept in ``OUT/<run>/test.json`` (a finished run is reused; delete its
folder to retrain); the tables (mean ± std over seeds) are printed and written to ``OUT/jgcar.md``.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
from common import REPO, mean_std, metric_row, train_and_measure

from xmodal.eval.metrics import direction_metrics
from xmodal.eval.protocol import encode_split, score_matrix
from xmodal.factory import load_trained
from xmodal.search import two_stage_scores
from xmodal.search.two_stage import cosine_scores

DATA = {"emoji": REPO.parent / "shared" / "data" / "emoji",
        "flickr8k": REPO.parent / "shared" / "data" / "flickr8k-1k"}
CONFIGS = {"emoji": REPO / "configs" / "jgcar" / "emoji-cpu.yaml",
           "flickr8k": REPO / "configs" / "jgcar" / "flickr8k.yaml"}
VARIANTS = {  # Tables 1-2 rows as --set overrides of the JGCAR config
    "GRL": ["model.params.mode=global"],
    "SGCAR": ["model.params.mode=separate"],
    "JGCAR": [],
    "JGCAR-v1": ["model.params.use_intra=false"],
    "JGCAR-v2": ["model.params.use_decorrelation=false"],
    "JGCAR d=16": ["model.params.dim=16"],
    "JGCAR-v2 d=16": ["model.params.dim=16", "model.params.use_decorrelation=false"],
}
SHORTLIST = 100  # K of the first stage (section 3.1)
RECALL_KEYS = [("i2t", "r@1"), ("i2t", "r@5"), ("i2t", "r@10"), ("t2i", "r@1"), ("t2i", "r@5"), ("t2i", "r@10"),
               ("", "rsum"), ("i2t", "map"), ("t2i", "map")]
HIGH_K_KEYS = [(d, f"r@{k}") for d in ("i2t", "t2i") for k in (20, 50, 100)]
RECALL_HEADER = ("| model | R@1 i2t | R@5 i2t | R@10 i2t | R@1 t2i | R@5 t2i | R@10 t2i | rsum | MAP@all i2t | "
                 "MAP@all t2i | epochs (best) | train s |\n" + "| --- " * 12 + "|")


@torch.no_grad()
def test_metrics(run_dir: Path) -> dict:
    """Test-split metrics of a run's best checkpoint: two-stage (K = 100) and exhaustive."""
    run = load_trained(run_dir)
    split = run.data.split("test")
    images, texts = encode_split(run.model, split, run.device)
    kwargs = {"image_labels": split.labels, "text_labels": split.text_labels(), "recall_ks": (20, 50, 100)}
    exhaustive = score_matrix(run.model, images, texts)
    result = {"exhaustive": direction_metrics(exhaustive, exhaustive, split.ground_truth(), **kwargs)}
    if run.model.embed(images) is not None:
        first = cosine_scores(run.model.embed(images), run.model.embed(texts))
        result["stage1"] = direction_metrics(first, first, split.ground_truth(), **kwargs)
        two_stage = two_stage_scores(run.model, images, texts, SHORTLIST)
        result["two_stage"] = direction_metrics(*two_stage, split.ground_truth(), **kwargs)
    else:
        result["two_stage"] = result["exhaustive"]
    return result



def row(name: str, runs: list[dict], which: str) -> str:
    # unlabelled datasets (flickr8k) have no MAP: NaN cells
    metrics = [{**run[which], **{d: {"map": math.nan, **run[which][d]} for d in ("i2t", "t2i")}} for run in runs]
    cells = metric_row(name, metrics, RECALL_KEYS)
    epochs = "/".join(f"{run['epochs']} ({run['best_epoch']})" for run in runs)
    return f"{cells} {epochs} | {mean_std([run['train_seconds'] for run in runs], digits=0)} |"


def rerank_row(name: str, runs: list[dict]) -> str:
    """rsum of stage 1 alone, of two-stage search and exhaustive ranking, and the per-run gain of the rerank."""
    stage1 = [run["stage1"]["rsum"] for run in runs]
    two = [run["two_stage"]["rsum"] for run in runs]
    gains = [b - a for a, b in zip(stage1, two)]
    return (f"| {name} | {mean_std(stage1, digits=1)} | {mean_std(two, digits=1)} | "
            f"{mean_std([run['exhaustive']['rsum'] for run in runs], digits=1)} | {mean_std(gains, digits=1)} |")


def tables(results: dict[str, list[dict]], seeds: str, dataset: str = "emoji") -> list[str]:
    reranked = {name: runs for name, runs in results.items() if name not in ("dual", "GRL") and "stage1" in runs[0]}
    return [f"## {dataset} test, two-stage retrieval (K = {SHORTLIST}), mean ± std over seeds {seeds}", "",
            RECALL_HEADER, *(row(name, runs, "two_stage") for name, runs in results.items()), "",
            "## Exhaustive co-attentive ranking of every pair (same checkpoints)", "", RECALL_HEADER,
            *(row(name, runs, "exhaustive") for name, runs in results.items() if name not in ("dual", "GRL")), "",
            f"## R@20/50/100 (Table 3), two-stage K = {SHORTLIST}", "",
            "| model | R@20 i2t | R@50 i2t | R@100 i2t | R@20 t2i | R@50 t2i | R@100 t2i |", "| --- " * 7 + "|",
            *(metric_row(name, [run["two_stage"] for run in runs], HIGH_K_KEYS) for name, runs in results.items()), "",
            f"## The rerank against its own first stage (rsum; gain = two-stage K = {SHORTLIST} - stage 1)", "",
            "| model | stage 1 (global cosine) | two-stage | exhaustive | gain |", "| --- " * 5 + "|",
            *(rerank_row(name, runs) for name, runs in reranked.items())]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", choices=list(DATA), default="emoji")
    parser.add_argument("--config", type=Path, help="default: configs/jgcar/emoji-cpu.yaml or flickr8k.yaml")
    parser.add_argument("--text", choices=["words", "tokens"],
                        help="JGCAR's word input, GloVe ids or MiniLM token states (default: the config's)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=["GRL", "SGCAR", "JGCAR", "JGCAR-v1", "JGCAR-v2"],
                        choices=list(VARIANTS))
    parser.add_argument("--no-dual", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("/tmp/jgcar-bench"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="extra config override for every JGCAR variant (not dual), e.g. train.epochs=10")
    args = parser.parse_args()
    names = args.variants if args.no_dual else ["dual", *args.variants]
    results: dict[str, list[dict]] = {name: [] for name in names}
    for seed in args.seeds:  # seed by seed, so an interrupted benchmark still has every variant
        for name in names:
            text = [f"data.text_input={args.text}"] if args.text else []
            extra = [] if name == "dual" else [*text, *args.overrides]
            overrides = [f"data.path={DATA[args.dataset]}", f"train.seed={seed}", *extra, *VARIANTS.get(name, [])]
            config = REPO / "configs" / "dual" / f"{args.dataset}.yaml" if name == "dual" else \
                args.config or CONFIGS[args.dataset]
            slug = name.lower().replace(" ", "").replace("=", "")
            results[name].append(train_and_measure(config, args.out / f"{slug}-s{seed}", overrides, test_metrics))
            print(f"{name} seed {seed}:", row(name, results[name][-1:], "two_stage"), flush=True)
            lines = tables({key: runs for key, runs in results.items() if runs}, ", ".join(map(str, args.seeds)),
                           args.dataset)
            (args.out / "jgcar.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
