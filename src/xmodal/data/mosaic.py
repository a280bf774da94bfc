"""Mosaics of real photos: a dataset in which the part of the image each text describes is known.

Each mosaic is an R x C grid of images from a source dataset with image files and captions
(``flickr8k``, ``emoji``, ``csv``, ``folder``, ...), written as a real JPEG file, so it is
extracted, cached, searched and served like any image. A mosaic's texts are its tiles' captions,
tile by tile, each with its tile's box (:attr:`xmodal.data.records.Item.text_boxes`): a model
whose attention finds what a caption describes should attend to that tile, which the pointing
game measures (:mod:`xmodal.eval.attention`).

- Tiles are the source images squashed to ``tile x tile`` pixels (as the encoders squash every
  image to a square), the mosaic ``C * tile`` wide and ``R * tile`` high. With ``data.resolution``
  equal to the mosaic's size each tile covers whole cells of the encoder's grid: 2 x 2 tiles of 224
  px at 448 px are 7 x 7 cells each of the 14 x 14 grid.
- No source image is in two splits: each split's mosaics are built from that split's images (the
  source's split decides). Val and test hold one grouping (a seeded shuffle cut into mosaics);
  train holds ``train_groupings`` of them, each a new shuffle, so training sees every photo in
  several mosaics beside different neighbours. Images left over by the last full mosaic of a
  grouping are left out (counted in the notes ``xmodal data info`` prints).
- Deterministic: the same source items, grid, tile, seed and groupings give the same mosaics.
  They are written once under ``$XMODAL_HOME/data/mosaic/<source>-<R>x<C>-<key>/``, atomically,
  with ``mosaics.json`` listing every mosaic's id, split and tiles (source item ids, rows,
  columns, boxes), so a mosaic can be rebuilt and inspected; the key changes when a source
  image's content does.
- Labels (when the source has them) are the union of the tiles' labels.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from xmodal.data.images import load_rgb
from xmodal.data.records import SPLITS, Box, Dataset, Item
from xmodal.data.registry import DatasetSpec, detect_reader, read_dataset, register_dataset
from xmodal.errors import DataError, XmodalError
from xmodal.file_hashes import file_keys
from xmodal.paths import atomic_directory, atomic_write_bytes, xmodal_home
from xmodal.progress import progress

logger = logging.getLogger(__name__)

FORMAT = 1  # the layout of mosaics.json and of the images; part of the folder's key
JPEG_QUALITY = 95


@dataclass(frozen=True)
class MosaicLayout:
    rows: int
    cols: int
    tile: int

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return self.cols * self.tile, self.rows * self.tile

    def box(self, position: int) -> Box:
        """The tile at ``position`` (row-major) as fractions of the mosaic."""
        row, col = divmod(position, self.cols)
        return (col / self.cols, row / self.rows, (col + 1) / self.cols, (row + 1) / self.rows)

    def cells_per_tile(self, resolution: int, stride: int = 32) -> str:
        """How the encoder's grid at ``resolution`` falls on the tiles (``7 x 7 cells``, or why not whole)."""
        side = resolution // stride
        if side % self.rows or side % self.cols:
            return (f"{side} x {side} cells: not whole cells per tile (choose a resolution whose grid side, "
                    f"resolution / {stride}, is a multiple of {self.rows} and {self.cols})")
        return f"{side // self.rows} x {side // self.cols} cells of the {side} x {side} grid"


def parse_grid(text: str) -> tuple[int, int]:
    """``"2x2"`` -> (2, 2): rows x columns."""
    try:
        rows, cols = (int(part) for part in str(text).lower().split("x"))
    except ValueError:
        raise XmodalError(f"grid {text!r}: give rows x columns, e.g. 2x2 or 3x3") from None
    if not (1 <= rows <= 8 and 1 <= cols <= 8) or rows * cols < 2:
        raise XmodalError(f"grid {text!r}: rows and columns between 1 and 8, at least two tiles")
    return rows, cols


def read_mosaic(path: Path | None, *, source: str | None = None, grid: str = "2x2", tile: int = 224, seed: int = 0,
                train_groupings: int = 2, skip_bad: bool = False) -> Dataset:
    """Mosaics of the source dataset at ``path`` (its reader named by ``source``, else detected)."""
    rows, cols = parse_grid(grid)
    if tile < 32 or tile % 32:
        raise XmodalError(f"tile {tile}: a multiple of 32 pixels (one encoder grid cell per 32 px), e.g. 224")
    if train_groupings < 1:
        raise XmodalError(f"train_groupings {train_groupings}: at least 1")
    layout = MosaicLayout(rows, cols, tile)
    if path is None and source is None:
        raise XmodalError("dataset 'mosaic' needs --path (the source dataset's folder or file) or --source NAME")
    source = source or detect_reader(Path(path), exclude=("mosaic",))  # type: ignore[arg-type]
    if source == "mosaic":
        raise XmodalError("a mosaic's source cannot be a mosaic; name the reader of the photos (--source)")
    base = read_dataset(source, Path(path) if path is not None else None, skip_bad=skip_bad)
    if base.image_kind != "file" or base.text_kind != "raw":
        raise XmodalError(f"dataset {source!r} ships features, not image files and texts: a mosaic needs both")
    keys = file_keys([item.image for item in base.items])  # type: ignore[misc]
    if None in keys:
        missing = base.items[keys.index(None)]
        raise DataError(missing.image, "image file not found or unreadable", "fix the source dataset, or pass "
                        "--skip-bad when reading it")
    plan = _plan(base, layout.rows * layout.cols, seed, train_groupings)
    identity = {"format": FORMAT, "source": source, "grid": [rows, cols], "tile": tile, "seed": seed,
                "train_groupings": train_groupings,
                "images": [[item.id, key] for item, key in zip(base.items, keys)]}
    key = hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:12]
    folder = xmodal_home() / "data" / "mosaic" / f"{base.name}-{rows}x{cols}-{key}"
    if not (folder / "mosaics.json").is_file():
        _write(folder, base, layout, plan, identity)
    return _dataset(folder, base, layout, source, train_groupings)


def _plan(base: Dataset, per_mosaic: int, seed: int, train_groupings: int) -> list[dict]:
    """Each mosaic's id, split and source item positions (row-major), from seeded shuffles per split."""
    mosaics = []
    for split in SPLITS:
        positions = [index for index, item in enumerate(base.items) if item.split == split]
        for grouping in range(train_groupings if split == "train" else 1):
            order = list(positions)
            random.Random(f"{seed}-{split}-{grouping}").shuffle(order)
            for number, start in enumerate(range(0, len(order) - per_mosaic + 1, per_mosaic)):
                name = f"{split}-g{grouping}-{number:05d}" if split == "train" else f"{split}-{number:05d}"
                mosaics.append({"id": name, "split": split, "tiles": order[start : start + per_mosaic]})
    return mosaics


def _write(folder: Path, base: Dataset, layout: MosaicLayout, plan: list[dict], identity: dict) -> None:
    logger.info("composing %d mosaics of %s (%d x %d tiles of %d px) in %s", len(plan), base.name, layout.rows,
                layout.cols, layout.tile, folder)
    records = []
    with atomic_directory(folder) as staging:
        (staging / "images").mkdir()
        for mosaic in progress(plan, total=len(plan), desc="mosaics", unit="mosaic"):
            canvas = Image.new("RGB", layout.size, "white")
            tiles = []
            for position, index in enumerate(mosaic["tiles"]):
                item = base.items[index]
                row, col = divmod(position, layout.cols)
                canvas.paste(load_rgb(item.image, layout.tile), (col * layout.tile, row * layout.tile))  # type: ignore[arg-type]
                tiles.append({"item": item.id, "row": row, "col": col, "box": list(layout.box(position))})
            canvas.save(staging / "images" / f"{mosaic['id']}.jpg", quality=JPEG_QUALITY, subsampling=0)
            records.append({"id": mosaic["id"], "split": mosaic["split"], "tiles": tiles})
        manifest = {key: value for key, value in identity.items() if key != "images"} | {"mosaics": records}
        atomic_write_bytes(staging / "mosaics.json", json.dumps(manifest, indent=1).encode())


def _dataset(folder: Path, base: Dataset, layout: MosaicLayout, source: str, train_groupings: int) -> Dataset:
    manifest = json.loads((folder / "mosaics.json").read_text(encoding="utf-8"))
    by_id = {item.id: item for item in base.items}
    items = []
    for mosaic in manifest["mosaics"]:
        texts, boxes, labels = [], [], set()
        for tile in mosaic["tiles"]:
            source_item = by_id[tile["item"]]
            texts += source_item.texts
            boxes += [tuple(tile["box"])] * len(source_item.texts)
            labels |= set(source_item.labels)
        items.append(Item(mosaic["id"], folder / "images" / f"{mosaic['id']}.jpg", tuple(texts), tuple(sorted(labels)),
                          mosaic["split"], text_boxes=tuple(boxes)))  # type: ignore[arg-type]
    used = {tile["item"] for mosaic in manifest["mosaics"] for tile in mosaic["tiles"]}
    width, height = layout.size
    notes = [f"mosaics of {source} ({base.source}): {layout.rows} x {layout.cols} tiles of {layout.tile} px, "
             f"{width} x {height} px images in {folder}",
             f"train: {train_groupings} grouping(s) of the training images; val, test: one",
             f"source images in no mosaic (left over by a grouping's last full mosaic): "
             f"{sum(item.id not in used for item in base.items)} of {len(base.items)}",
             f"each text's tile is known: at resolution {max(width, height)} a tile covers "
             f"{layout.cells_per_tile(max(width, height))}"]
    return Dataset(f"mosaic-{base.name}", items, label_names=list(base.label_names), source=str(folder),
                   skipped=list(base.skipped), notes=notes)


register_dataset(DatasetSpec(
    "mosaic", "R x C mosaics of a dataset's photos, each text with the tile it describes: --path to the source "
    "dataset (its reader detected, or --source NAME), --grid 2x2", read_mosaic, needs_path=False,
    options=("source", "grid", "tile", "seed", "train_groupings")))
