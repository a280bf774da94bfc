"""A self-contained HTML page of ranked results with thumbnails (images inlined as base64)."""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from pathlib import Path

from xmodal.data.images import load_rgb
from xmodal.data.records import FeatureRow, Item


@dataclass
class TextQuery:
    text: str
    results: list[tuple[Item, float, bool]]  # ranked images: item, score, is a true match


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
"""


def render_report(title: str, metrics_table: str, text_queries: list[TextQuery], image_queries: list[ImageQuery],
                  notes: str = "", curves_png: bytes | None = None, config_text: str = "") -> str:
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
    from xmodal.paths import atomic_write_bytes

    atomic_write_bytes(path, page.encode("utf-8"))
