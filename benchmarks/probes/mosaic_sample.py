"""One test mosaic as a PNG with its captions by tile, to look at what the pointing game asks.

    python -m benchmarks probe mosaic-sample --path SOURCE [--source NAME] [--tile 128] [--number 0] --out DIR

Writes ``DIR/<mosaic id>.png`` and ``DIR/<mosaic id>.md`` (each tile's position, source item and
captions). Flickr8k photos may not be copied into the repository: write those outside it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from xmodal.api import load_dataset


def write_sample(path: str, source: str | None, tile: int, number: int, out: Path) -> Path:
    options = {"tile": tile} | ({"source": source} if source else {})
    dataset = load_dataset("mosaic", path, **options)
    item = [item for item in dataset.items if item.split == "test"][number]
    out.mkdir(parents=True, exist_ok=True)
    picture = out / f"{dataset.name}-{item.id}.png"
    Image.open(item.image).convert("RGB").save(picture)
    lines = [f"# {dataset.name}: test mosaic {item.id}", "", f"![{item.id}]({picture.name})", "",
             f"Tiles of {tile} px; made by `python -m benchmarks probe mosaic-sample` (the source's folder given "
             "with --path).", *dataset.notes[1:], "",
             "| tile (row, column) | box (x0, y0, x1, y1, fractions) | caption |",
             "| --- | --- | --- |"]
    for text, box in zip(item.texts, item.text_boxes):
        row, column = round(box[1] / (box[3] - box[1])), round(box[0] / (box[2] - box[0]))
        cells = ", ".join(f"{value:.2f}" for value in box)
        lines.append(f"| ({row}, {column}) | {cells} | {text.replace('|', '/')} |")
    picture.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return picture


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks probe mosaic-sample")
    parser.add_argument("--path", required=True, help="the source dataset (a folder of photos, emoji, ...)")
    parser.add_argument("--source", default=None)
    parser.add_argument("--tile", type=int, default=128)
    parser.add_argument("--number", type=int, default=0, help="which test mosaic (0: the first)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    print(write_sample(args.path, args.source, args.tile, args.number, args.out))
