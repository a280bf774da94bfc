"""``xmodal serve INDEX``: the search engine as a web service (FastAPI) and a web page.

Routes:

* ``POST /search``: a JSON body ``{"text": ..., "k": 10}`` searches the images; a multipart form
  with an ``image`` file (and optional ``k``, ``shortlist``, ``min_score`` fields) searches the texts.
* ``POST /explain``: the attention maps behind the score of a query (``text`` in JSON, or an
  ``image`` upload) with an indexed item (``item``).
* ``GET /items/{id}``: an item's metadata; ``GET /thumbnails/{id}``: a PNG thumbnail of an
  indexed image. Only files the index lists are ever read.
* ``GET /health``, ``GET /openapi.json``; ``GET /`` the page (``web/``), no CDN.

Every limit (query length, upload size and type, image pixels, k) is a 4xx with a message; an
input error never stops the server. Work on the model is serialised by a lock (torch already
uses every core for one query).
"""

from __future__ import annotations

import logging
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from xmodal.data.images import load_rgb
from xmodal.errors import DataError, NotFoundError, TooLargeError, XmodalError
from xmodal.report_html import image_png

logger = logging.getLogger(__name__)

WEB = Path(__file__).parent / "web"


@dataclass(frozen=True)
class Limits:
    max_query_chars: int = 1000
    max_upload_bytes: int = 10 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    max_k: int = 100
    max_shortlist: int = 1000
    thumbnail_px: int = 256


def attention_json(attention) -> dict[str, Any] | None:
    """An :class:`~xmodal.models.base.Attention` as plain JSON (weights as nested lists)."""
    if attention is None:
        return None
    maps = {name: {"axes": list(m.axes), "shape": list(m.weights.shape),
                   "weights": m.weights.detach().float().cpu().tolist(),
                   "grids": {axis: list(grid) for axis, grid in m.grids.items()}, "labels": dict(m.labels)}
            for name, m in attention.maps.items()}
    return {"maps": maps, "note": attention.note}


def create_app(engine, limits: Limits = Limits()):
    """The FastAPI app of one opened :class:`~xmodal.search.engine.SearchEngine`."""
    app = FastAPI(title="xmodal search", version="1", docs_url=None, redoc_url=None,  # their pages load a CDN
                  description="Text-to-image and image-to-text search with a trained xmodal run.")
    lock = threading.Lock()
    manifest = engine.index.manifest

    def bad(status: int, message: str):
        return HTTPException(status_code=status, detail=message)

    @app.exception_handler(XmodalError)
    async def _user_error(request: Request, error: XmodalError):
        status = 404 if isinstance(error, NotFoundError) else 413 if isinstance(error, TooLargeError) else 400
        return JSONResponse(status_code=status, content={"detail": str(error)})

    def check_k(k: Any, name: str, top: int) -> int:
        try:
            value = int(k)
        except (TypeError, ValueError):
            raise bad(422, f"{name} must be an integer") from None
        if not 1 <= value <= top:
            raise bad(422, f"{name} must be between 1 and {top} (got {value})")
        return value

    def check_text(text: Any) -> str:
        if not isinstance(text, str) or not text.strip():
            raise bad(422, "the query text is empty; type some words")
        if len(text) > limits.max_query_chars:
            raise bad(413, f"the query text has {len(text):,} characters; the limit is {limits.max_query_chars:,}")
        return text

    async def read_upload(upload) -> Path:
        """The uploaded image in a temporary file, checked: size, type, pixels."""
        data = await upload.read(limits.max_upload_bytes + 1)
        if len(data) > limits.max_upload_bytes:
            raise bad(413, f"the upload is over {limits.max_upload_bytes // (1024 * 1024)} MB")
        if not data:
            raise bad(422, "the uploaded file is empty")
        handle = tempfile.NamedTemporaryFile(prefix="xmodal-upload-", suffix=".img", delete=False)
        with handle:
            handle.write(data)
        path = Path(handle.name)
        try:
            load_rgb(path, 64, max_pixels=limits.max_image_pixels)
        except DataError as error:
            path.unlink(missing_ok=True)
            status = 413 if isinstance(error, TooLargeError) else 415
            shown = "over the limit" if status == 413 else "not an image this server can read"
            raise bad(status, f"the upload is {shown}: {error.problem}") from None
        return path

    async def query_of(request: Request) -> tuple[dict[str, Any], Path | None]:
        """The request's fields, from a JSON body or a multipart form (with an ``image`` file)."""
        kind = request.headers.get("content-type", "")
        if kind.startswith("multipart/form-data"):
            form = await request.form()
            fields = {key: value for key, value in form.items() if key != "image"}
            upload = form.get("image")
            image = await read_upload(upload) if upload is not None and hasattr(upload, "read") else None
            return fields, image
        body = await request.body()
        if len(body) > limits.max_query_chars * 4 + 1024:
            raise bad(413, f"the request body is over {limits.max_query_chars * 4 + 1024:,} bytes")
        try:
            fields = await request.json()
        except ValueError:
            raise bad(422, "send a JSON object ({\"text\": ...}) or a multipart form with an image") from None
        if not isinstance(fields, dict):
            raise bad(422, "send a JSON object ({\"text\": ...})")
        return fields, None

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "model": manifest["run"]["model"], "dataset": manifest["run"]["dataset"],
                "items": {name: len(side) for name, side in engine.index.sides.items()},
                "backend": manifest["backend"], "two_stage": engine.pairwise}

    @app.post("/search")
    async def search(request: Request) -> dict[str, Any]:
        fields, image = await query_of(request)
        try:
            k = check_k(fields.get("k", 10), "k", limits.max_k)
            shortlist = check_k(fields.get("shortlist", engine.shortlist), "shortlist", limits.max_shortlist)
            min_score = fields.get("min_score")
            min_score = None if min_score in (None, "") else float(min_score)
            with lock:
                if image is not None:
                    hits = engine.search_image(image, k, shortlist, min_score)
                    query = {"image": "upload"}
                else:
                    text = check_text(fields.get("text"))
                    hits = engine.search_text(text, k, shortlist, min_score)
                    query = {"text": text}
        except ValueError:
            raise bad(422, "min_score must be a number") from None
        finally:
            if image is not None:
                image.unlink(missing_ok=True)
        # An image's source is a path on this machine: the page asks /thumbnails for it instead.
        return {"query": query, "two_stage": engine.pairwise,
                "hits": [hit.as_dict() | ({"source": None} if hit.side == "images" else {}) for hit in hits]}

    @app.post("/explain")
    async def explain(request: Request) -> dict[str, Any]:
        fields, image = await query_of(request)
        try:
            item = fields.get("item")
            if not isinstance(item, str) or not item:
                raise bad(422, "name the indexed item to explain: {\"item\": ID, \"text\": ...}")
            with lock:
                if image is not None:
                    attention = engine.explain_labelled(item, image=image)
                else:
                    text = check_text(fields.get("text"))
                    attention = engine.explain_labelled(item, text=text)
        finally:
            if image is not None:
                image.unlink(missing_ok=True)
        return {"item": item, "attention": attention_json(attention)}

    @app.get("/items/{item_id:path}")
    def item(item_id: str) -> dict[str, Any]:
        side, row = engine.index.entry(item_id)
        entry = engine.index.sides[side].entries[row]
        text = entry.source if side == "texts" else None
        return {"id": entry.id, "side": side, "text": text, "meta": entry.meta,
                "thumbnail": f"/thumbnails/{entry.id}" if side == "images" and entry.source else None}

    @app.get("/thumbnails/{item_id:path}")
    def thumbnail(item_id: str) -> Response:
        side, row = engine.index.entry(item_id)
        entry = engine.index.sides[side].entries[row]
        if side != "images" or not entry.source:
            raise bad(404, f"item {item_id!r} has no image")
        image = load_rgb(Path(entry.source))  # a path the index lists, never one from the request
        image.thumbnail((limits.thumbnail_px, limits.thumbnail_px))
        return Response(image_png(image), media_type="image/png", headers={"Cache-Control": "max-age=3600"})

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(WEB / "index.html", media_type="text/html")

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> FileResponse:
        files = {path.name: path for path in WEB.iterdir() if path.suffix in (".js", ".css")}
        if name not in files:
            raise bad(404, f"no static file {name!r}")
        media = "text/javascript" if name.endswith(".js") else "text/css"
        return FileResponse(files[name], media_type=media)

    return app


def serve(engine, host: str = "127.0.0.1", port: int = 8000, limits: Limits = Limits()) -> None:
    import uvicorn

    if host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning("serving on %s: anyone who can reach this address can query the index", host)
    logger.info("serving %s on http://%s:%d/ (API schema at /openapi.json)", engine.index.folder, host, port)
    uvicorn.run(create_app(engine, limits), host=host, port=port, log_level="warning")
