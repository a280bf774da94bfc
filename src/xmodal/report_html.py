"""A self-contained HTML page of ranked results with thumbnails (images inlined as base64)."""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from xmodal.data.images import load_rgb
from xmodal.data.records import FeatureRow, Item
from xmodal.paths import atomic_write_bytes


@dataclass
class TextQuery:
    text: str
    results: list[tuple[Item, float, bool]]  # ranked images: item, score, is a true match
    row: int | None = None  # the text's row in its split, when it is one of the split's texts


@dataclass
class ImageQuery:
    item: Item
    results: list[tuple[str, float, bool]]  # ranked texts: text, score, is a true match


def item_label(item: Item) -> str:
    """How a person knows an item: its first text, or its id when the texts are feature rows."""
    first = item.texts[0] if item.texts else None
    return first if isinstance(first, str) else item.id


def thumbnail(item: Item, size: int = 64) -> str:
    """``<img>`` with the item's image inlined, or a placeholder for feature-only datasets."""
    if isinstance(item.image, FeatureRow):
        return f'<div class="nothumb">{html.escape(item.id)}</div>'
    image = load_rgb(item.image)
    image.thumbnail((size, size))
    return f'<img src="{_data_uri(image_png(image))}" alt="{html.escape(item.id)}" width="{size}">'


def image_png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


@dataclass
class AttentionView:
    """The attention behind one score: a text query and the image it ranked first."""

    text: str
    item: Item
    attention: Any  # xmodal.models.base.Attention, or None when the model has none


def _mean_along(weights: Any, axes: tuple[str, ...], axis: str) -> np.ndarray:
    """The weights of ``axis``, averaged over every other axis."""
    array = np.asarray(weights.detach().float().cpu(), dtype=np.float64)
    keep = axes.index(axis)
    return array.mean(axis=tuple(i for i in range(array.ndim) if i != keep)) if array.ndim > 1 else array


def heat_map(item: Item, weights: np.ndarray, grid: tuple[int, int], size: int = 160) -> str:
    """``<img>`` of the item with its region weights laid over it in red (the papers' attention figures)."""
    image = load_rgb(item.image, size) if not isinstance(item.image, FeatureRow) else Image.new("RGB", (size, size))
    share = (weights / max(float(weights.max()), 1e-12)).reshape(grid)
    alpha = Image.fromarray(np.uint8(255 * 0.65 * share)).resize((size, size), Image.Resampling.BILINEAR)
    red = Image.new("RGB", (size, size), (255, 0, 0))
    overlay = Image.composite(red, image.convert("RGB"), alpha)
    return f'<img src="{_data_uri(image_png(overlay))}" alt="attention over the regions of {html.escape(item.id)}">'


def _weighted_words(words: list[str], weights: np.ndarray) -> str:
    top = max(float(weights.max()), 1e-12)
    return "".join(f'<span class="word" style="background: rgba(220, 40, 40, {w / top:.3f})" '
                   f'title="{w:.4f}">{html.escape(word)}</span>' for word, w in zip(words, weights))


def _bars(weights: np.ndarray, limit: int = 32) -> str:
    top = max(float(weights.max()), 1e-12)
    return "".join(f'<div class="bar" style="width: {int(160 * w / top)}px" title="{w:.4f}"></div>'
                   for w in weights[:limit])


def attention_html(view: AttentionView) -> str:
    """Every map of one :class:`AttentionView`: region heat maps, weighted words, or bars."""
    if view.attention is None:
        return f"<p>{html.escape(view.text)}: this model's score has no attention to show.</p>"
    blocks = []
    for name, attention_map in view.attention.maps.items():
        parts = [f"<div class='attn'><div class='attnname'>{html.escape(name)} "
                 f"({' x '.join(attention_map.axes)})</div>"]
        if "region" in attention_map.grids:
            parts.append(heat_map(view.item, _mean_along(attention_map.weights, attention_map.axes, "region"),
                                  attention_map.grids["region"]))
        if "word" in attention_map.labels:
            parts.append("<div>" + _weighted_words(attention_map.labels["word"], _mean_along(
                attention_map.weights, attention_map.axes, "word")) + "</div>")
        if "region" not in attention_map.grids and "word" not in attention_map.labels:
            parts.append(_bars(np.asarray(attention_map.weights.detach().float().cpu()).reshape(-1)))
        blocks.append("".join(parts) + "</div>")
    note = f"<div class='caption'>{html.escape(view.attention.note)}</div>" if view.attention.note else ""
    return (f"<div class='query'><b>&ldquo;{html.escape(view.text)}&rdquo;</b> &rarr; "
            f"{html.escape(item_label(view.item))}<div class='results'>{''.join(blocks)}</div>{note}</div>")


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table.metrics td, table.metrics th { padding: 2px 10px; text-align: right; }
.query { margin: 1.2em 0; } .results { display: flex; gap: 10px; flex-wrap: wrap; }
.hit { border: 3px solid #2a2; } .miss { border: 3px solid #ddd; }
.cell { padding: 4px; text-align: center; font-size: 12px; width: 120px; }
.nothumb { width: 64px; height: 64px; background: #eee; font-size: 9px; overflow: hidden; }
.queryimage { display: flex; gap: 12px; align-items: flex-start; } .caption { font-size: 13px; }
ol li { margin: 2px 0; } ol li.hit { border: none; color: #1a1; font-weight: 600; }
pre.config { background: #f6f6f6; padding: 8px; font-size: 12px; }
.attn { font-size: 12px; max-width: 340px; } .attnname { color: #555; margin-bottom: 3px; }
span.word { padding: 1px 3px; margin: 1px; border-radius: 3px; display: inline-block; }
div.bar { height: 8px; background: #c33; margin: 1px 0; }
"""


NO_REGION_MAP = (
    "No heat map over the image: this model's attention does not weigh image regions (the note above says "
    "what its weights are). The models with region attention (SCAN, BSSAN, ACLN, JGCAR) draw one; "
    "<code>xmodal demo --config scan/mosaic-emoji --path DIR</code> trains SCAN on mosaics of four emoji, where "
    "the tile a caption describes is known, and how often each model's hottest region lies in that tile is "
    "measured in benchmarks/results/mosaic.md.")


def shows_regions(view: AttentionView) -> bool:
    return view.attention is not None and any("region" in m.grids for m in view.attention.maps.values())


def render_report(title: str, metrics_table: str, text_queries: list[TextQuery], image_queries: list[ImageQuery],
                  notes: str = "", curves_png: bytes | None = None, config_text: str = "",
                  attention: Sequence[AttentionView] = ()) -> str:
    parts = [f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title><style>{STYLE}</style>",
             f"<h1>{html.escape(title)}</h1>", f"<p>{html.escape(notes)}</p>" if notes else "",
             "<h2>Test metrics</h2>", f"<pre>{html.escape(metrics_table)}</pre>",
             "<h2>Text &rarr; images (test texts as queries, ranked over the test images)</h2>"]
    for query in text_queries:
        cells = "".join(
            f'<div class="cell {"hit" if hit else "miss"}">{thumbnail(item)}<br>{html.escape(item_label(item))}'
            f"<br>{score:.3f}</div>" for item, score, hit in query.results)
        parts.append(f'<div class="query"><b>&ldquo;{html.escape(query.text)}&rdquo;</b>'
                     f'<div class="results">{cells}</div></div>')
    if attention:
        parts.append("<h2>The attention behind each text query's first result</h2>")
        parts += [attention_html(view) for view in attention]
        if not any(shows_regions(view) for view in attention):
            parts.append(f"<p>{NO_REGION_MAP}</p>")
    parts.append("<h2>Image &rarr; texts (test images as queries, ranked over the test texts)</h2>")
    for query in image_queries:
        rows = "".join(f'<li class="{"hit" if hit else ""}">{html.escape(text)} ({score:.3f})</li>'
                       for text, score, hit in query.results)
        name = (f"<div class='caption'><b>{html.escape(query.item.id)}</b><br>"
                f"{html.escape(item_label(query.item))}</div>")
        parts.append(f'<div class="query queryimage"><div>{thumbnail(query.item, 96)}{name}</div><ol>{rows}</ol></div>')
    parts.append("<p>Green: a true match (the query's own image or texts).</p>")
    if curves_png:
        parts += ["<h2>Training curves</h2>", f'<img src="{_data_uri(curves_png)}" alt="training curves">']
    if config_text:
        parts += ["<h2>Config</h2>", f'<pre class="config">{html.escape(config_text)}</pre>']
    return "\n".join(parts)


def write_report(path: Path, page: str) -> None:
    atomic_write_bytes(path, page.encode("utf-8"))
