"""Synthetic SCAN-precomputed folders of the field's shapes (issue 31): ``python -m benchmarks synthetic OUT``.

Writes ``{split}_ims.npy`` (images x regions x dim, float16, as SCAN's bottom-up features) and
``{split}_caps.txt`` (5 captions per image, one per line) that ``xmodal`` reads as the
``scan-precomputed`` dataset. So that a model has something to learn, each image belongs to one of
``--topics`` latent topics: its regions are the topic's prototype plus noise, and its captions
draw most words from the topic's own share of the vocabulary, the rest from common words.

Presets name the splits' sizes: ``flickr30k`` (29,000 / 1,014 / 1,000 images), ``coco`` (113,287 /
5,000 / 5,000, the test split as ``testall``, SCAN's 5K), ``coco-test`` (COCO's 5K test split
beside a small train split, enough to train a baseline and evaluate ``--protocol coco-1k``).

    .venv/bin/python -m benchmarks synthetic /tmp/coco-test --preset coco-test
    xmodal train --config dual/emoji --set data.dataset=scan-precomputed --path /tmp/coco-test ...
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

PRESETS = {"flickr30k": {"train": 29000, "dev": 1014, "test": 1000, "vocab": 8500},
           "coco": {"train": 113287, "dev": 5000, "testall": 5000, "vocab": 11000},
           "coco-test": {"train": 2000, "dev": 500, "testall": 5000, "vocab": 11000}}
CAPTIONS = 5
WORDS = 10  # per caption


def write_split(out: Path, stem: str, n: int, prototypes: np.ndarray, topic_words: list[np.ndarray],
                vocabulary: list[str], regions: int, rng: np.random.Generator) -> None:
    topics = rng.integers(0, len(prototypes), n)
    images = np.lib.format.open_memmap(out / f"{stem}_ims.npy", mode="w+", dtype=np.float16,
                                       shape=(n, regions, prototypes.shape[1]))
    for start in range(0, n, 1000):  # a block at a time: COCO's train split is 33 GB as float32
        block = topics[start:start + 1000]
        noise = rng.standard_normal((len(block), regions, prototypes.shape[1]), dtype=np.float32)
        # non-negative, as the detector's ReLU'd features
        images[start:start + len(block)] = np.maximum(prototypes[block][:, None, :] + noise, 0)
    images.flush()
    common = np.arange(len(vocabulary))
    lines = []
    for topic in topics:
        for _ in range(CAPTIONS):
            own = rng.choice(topic_words[topic], WORDS // 2 + 1)
            rest = rng.choice(common, WORDS - len(own))
            lines.append(" ".join(vocabulary[w] for w in np.concatenate([own, rest])))
    (out / f"{stem}_caps.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


def generate(out: Path, sizes: dict[str, int], vocab: int, regions: int = 36, dim: int = 2048, topics: int = 100,
             seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    vocabulary = [f"w{index}" for index in range(vocab)]
    prototypes = 2.0 * rng.standard_normal((topics, dim), dtype=np.float32)
    topic_words = np.array_split(rng.permutation(vocab), topics)
    for stem, n in sizes.items():
        write_split(out, stem, n, prototypes, topic_words, vocabulary, regions, rng)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks synthetic")
    parser.add_argument("out", type=Path)
    parser.add_argument("--preset", choices=list(PRESETS), default="coco-test")
    parser.add_argument("--regions", type=int, default=36)
    parser.add_argument("--dim", type=int, default=2048)
    args = parser.parse_args(argv)
    preset = dict(PRESETS[args.preset])
    vocab = preset.pop("vocab")
    generate(args.out, preset, vocab, args.regions, args.dim)
    print(f"wrote {args.out}: " + ", ".join(f"{stem} {n:,} images" for stem, n in preset.items()))
