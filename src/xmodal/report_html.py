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


def thumbnail(item: Item, size: int = 64) -> str:
    """``<img>`` with the item's image inlined, or a placeholder for feature-only datasets."""
    if isinstance(item.image, FeatureRow):
        return f'<div class="nothumb">{html.escape(item.id)}</div>'
    image = load_rgb(item.image)
    image.thumbnail((size, size))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    data = base64.b64encode(buffer.getvalue()).decode()
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(item.id)}" width="{size}">'


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table.metrics td, table.metrics th { padding: 2px 10px; text-align: right; }
.query { margin: 1.2em 0; } .results { display: flex; gap: 10px; flex-wrap: wrap; }
.hit { border: 3px solid #2a2; } .miss { border: 3px solid #ddd; }
.cell { padding: 4px; text-align: center; font-size: 12px; width: 120px; }
.nothumb { width: 64px; height: 64px; background: #eee; font-size: 9px; overflow: hidden; }
ol li { margin: 2px 0; } ol li.hit { border: none; color: #1a1; font-weight: 600; }
"""


def render_report(title: str, metrics_table: str, text_queries: list[TextQuery],
                  image_queries: list[ImageQuery], notes: str = "") -> str:
    parts = [f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title><style>{STYLE}</style>",
             f"<h1>{html.escape(title)}</h1>", f"<p>{html.escape(notes)}</p>" if notes else "",
             "<h2>Test metrics</h2>", f"<pre>{html.escape(metrics_table)}</pre>",
             "<h2>Text &rarr; images (typed queries, ranked over the test images)</h2>"]
    for query in text_queries:
        cells = "".join(
            f'<div class="cell {"hit" if hit else "miss"}">{thumbnail(item)}<br>{html.escape(item.texts[0])}'
            f"<br>{score:.3f}</div>" for item, score, hit in query.results)
        parts.append(f'<div class="query"><b>&ldquo;{html.escape(query.text)}&rdquo;</b>'
                     f'<div class="results">{cells}</div></div>')
    parts.append("<h2>Image &rarr; texts (ranked over the test texts)</h2>")
    for query in image_queries:
        rows = "".join(f'<li class="{"hit" if hit else ""}">{html.escape(text)} ({score:.3f})</li>'
                       for text, score, hit in query.results)
        parts.append(f'<div class="query">{thumbnail(query.item, 96)}<ol>{rows}</ol></div>')
    parts.append("<p>Green: a true match (the query's own image or texts).</p>")
    return "\n".join(parts)


def write_report(path: Path, page: str) -> None:
    from xmodal.paths import atomic_write_bytes

    atomic_write_bytes(path, page.encode("utf-8"))
