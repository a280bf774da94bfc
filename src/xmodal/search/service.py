"""``xmodal serve INDEX``: the search engine as a web service (FastAPI) and a web page.

Routes:

* ``POST /search``: a JSON body ``{"text": ..., "k": 10}`` searches the images; a multipart form
  with an ``image`` file (and optional ``k``, ``shortlist``, ``min_score`` fields) searches the texts.
* ``POST /explain``: the attention maps behind the score of a query (``text`` in JSON, or an
  ``image`` upload) with an indexed item (``item``).
* ``GET /items/{id}``: an item's metadata; ``GET /thumbnails/{id}``: a PNG thumbnail of an
  indexed image. Only files the index lists are ever read.
* ``GET /health`` (the version served and its item counts), ``GET /openapi.json``; ``GET /`` the
  page (``web/``), no CDN.

It stays up under load and bad input:

- Every malformed request is a 4xx with a message: bodies are checked against their size limit by
  ``Content-Length`` before they are read (and counted while they stream), JSON is parsed with
  its nesting bounded and validated by request models, texts must be valid Unicode.
- Model work runs off the event loop, in a bounded pool of worker threads, one search on the model
  at a time (torch already uses every core for one); ``/health`` never waits for it. Queries that
  wait for the model together are answered by one batched search per kind, texts and uploaded
  images (:class:`~xmodal.search.batching.QueryBatcher`: one encoding batch, one backend search). Concurrent
  uploads beyond a cap are answered 503 at once, a body that stalls is dropped (408), and a
  connection that has not sent a whole request head within 10 s is closed (slow clients).
- The index is watched: when a writer publishes a new version (``xmodal index add / remove``),
  the server swaps to it between queries; every answer comes from one complete version.
- Error bodies name items and limits, never a path on the server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import tempfile
import threading
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import anyio
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, ValidationError

from xmodal.data.images import load_rgb
from xmodal.errors import DataError, NotFoundError, TooLargeError, XmodalError
from xmodal.report_html import image_png
from xmodal.search.batching import QueryBatcher

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
    max_json_bytes: int = 16 * 1024  # a query is a few words; a larger JSON body is refused unread
    max_uploads: int = 8  # concurrent image uploads; more are answered 503 at once
    workers: int = 32  # threads doing model work (one at a time on the model; the rest wait their turn)
    max_batch: int = 32  # text queries waiting for the model together, answered in one search (batching)
    body_timeout_s: float = 30.0  # a request body that stalls longer is dropped (408)
    header_timeout_s: float = 10.0  # a connection that has not sent a whole request head by then is closed
    max_connections: int = 1000  # open connections (idle, half-sent or busy); more are answered 503
    refresh_s: float = 0.5  # how often the server looks for a new version of the index


class SearchBody(BaseModel):
    """A JSON search request; any other key or a value of another type is a 422."""

    model_config = ConfigDict(extra="forbid")
    text: str | None = None
    k: int = 10
    shortlist: int | None = None
    min_score: float | None = None


class ExplainBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    item: str | None = None
    text: str | None = None


def attention_json(attention) -> dict[str, Any] | None:
    """An :class:`~xmodal.models.base.Attention` as plain JSON (weights as nested lists)."""
    if attention is None:
        return None
    maps = {name: {"axes": list(m.axes), "shape": list(m.weights.shape),
                   "weights": m.weights.detach().float().cpu().tolist(),
                   "grids": {axis: list(grid) for axis, grid in m.grids.items()}, "labels": dict(m.labels)}
            for name, m in attention.maps.items()}
    return {"maps": maps, "note": attention.note}


def _bad(status: int, message: str) -> HTTPException:
    return HTTPException(status_code=status, detail=message)


class BodyLimit:
    """ASGI middleware: a body over its route's limit is refused (413) by ``Content-Length`` before it is
    read, or as soon as a streamed body passes it; a body that stalls is dropped (408)."""

    def __init__(self, app: Callable, limit: Callable[[str, str], int], timeout: float):
        self.app, self.limit, self.timeout = app, limit, timeout

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit(scope["method"], scope["path"])
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length", b"").decode("latin-1").strip()
        if length and (not length.isdigit() or int(length) > limit):
            await JSONResponse({"detail": f"the request body is over the limit of {limit:,} bytes"}, 413)(
                scope, receive, send)
            return
        received = 0

        async def limited() -> dict:
            nonlocal received
            try:
                message = await asyncio.wait_for(receive(), self.timeout)
            except asyncio.TimeoutError:
                raise _bad(408, f"the request body stalled for over {self.timeout:.0f} s") from None
            received += len(message.get("body", b""))
            if received > limit:
                raise _bad(413, f"the request body is over the limit of {limit:,} bytes")
            return message

        await self.app(scope, limited, send)


def create_app(engine, limits: Limits = Limits()):
    """The FastAPI app of one opened :class:`~xmodal.search.engine.SearchEngine`."""
    model_lock = threading.Lock()  # one query on the model at a time
    watcher = IndexWatcher(engine, model_lock, limits.refresh_s)
    batcher = QueryBatcher(engine, model_lock, limits.max_batch)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        watcher.start()
        yield
        watcher.stop()
        engine.index.close()

    app = FastAPI(title="xmodal search", version="1", docs_url=None, redoc_url=None,  # their pages load a CDN
                  description="Text-to-image and image-to-text search with a trained xmodal run.", lifespan=lifespan)
    workers = anyio.CapacityLimiter(limits.workers)
    uploads = {"open": 0}
    private = [str(path) for path in (engine.index.folder.absolute(), engine.run.folder)]

    def upload_limit(method: str, path: str) -> int:
        if method == "POST" and path in ("/search", "/explain"):
            return limits.max_upload_bytes + 64 * 1024  # an image and the form's other fields
        return limits.max_json_bytes

    app.add_middleware(BodyLimit, limit=upload_limit, timeout=limits.body_timeout_s)

    def public(message: str) -> str:
        """A message without this machine's paths (the index's, the run's, temporary files')."""
        for path in private:
            message = message.replace(path, Path(path).name)
        # Any other absolute path (an image's source, say) by its file name; a relative id the client
        # sent (``../../etc/passwd``) is left as it was sent.
        return re.sub(r"(?<![\w.~-])(/[\w.-]+){2,}", lambda match: Path(match.group(0)).name, message)

    @app.exception_handler(XmodalError)
    async def _user_error(request: Request, error: XmodalError):
        status = 404 if isinstance(error, NotFoundError) else 413 if isinstance(error, TooLargeError) else 400
        text = error.problem if isinstance(error, DataError) else str(error)
        return JSONResponse(status_code=status, content={"detail": public(text)})

    async def in_worker(work: Callable[[], Any]) -> Any:
        """Model work in the bounded pool, off the event loop, one query on the model at a time."""
        def locked() -> Any:
            with model_lock:
                return work()
        return await anyio.to_thread.run_sync(locked, limiter=workers)

    def check_k(value: Any, name: str, top: int) -> int:
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise _bad(422, f"{name} must be an integer") from None
        if not 1 <= number <= top:
            raise _bad(422, f"{name} must be between 1 and {top} (got {number})")
        return number

    def check_text(text: Any) -> str:
        if not isinstance(text, str) or not text.strip():
            raise _bad(422, "the query text is empty; type some words")
        if len(text) > limits.max_query_chars:
            raise _bad(413, f"the query text has {len(text):,} characters; the limit is {limits.max_query_chars:,}")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise _bad(422, "the query text is not valid Unicode (it holds a lone surrogate)") from None
        return text

    def check_upload(data: bytes) -> Path:
        """The uploaded image in a temporary file, checked: size, type, pixels (in a worker thread)."""
        if len(data) > limits.max_upload_bytes:
            raise _bad(413, f"the upload is over {limits.max_upload_bytes // (1024 * 1024)} MB")
        if not data:
            raise _bad(422, "the uploaded file is empty")
        with tempfile.NamedTemporaryFile(prefix="xmodal-upload-", suffix=".img", delete=False) as handle:
            handle.write(data)
        path = Path(handle.name)
        try:
            load_rgb(path, 64, max_pixels=limits.max_image_pixels)
        except DataError as error:
            path.unlink(missing_ok=True)
            status = 413 if isinstance(error, TooLargeError) else 415
            shown = "over the limit" if status == 413 else "not an image this server can read"
            problem = error.problem.replace(str(path), "the uploaded file")
            raise _bad(status, f"the upload is {shown}: {public(problem)}") from None
        return path

    async def query_of(request: Request, model: type[BaseModel]) -> tuple[dict[str, Any], Path | None]:
        """The request's fields, from a JSON body or a multipart form (with an ``image`` file)."""
        kind = request.headers.get("content-type", "")
        if kind.startswith("multipart/form-data"):
            if uploads["open"] >= limits.max_uploads:
                async for _ in request.stream():  # discarded (bounded by BodyLimit), so the client reads the 503
                    pass
                raise _bad(503, f"{limits.max_uploads} uploads are in progress; try again in a moment")
            uploads["open"] += 1
            try:
                form = await request.form()
                fields = {key: value for key, value in form.items() if key != "image" and isinstance(value, str)}
                upload = form.get("image")
                data = await upload.read() if upload is not None and hasattr(upload, "read") else None
            finally:
                uploads["open"] -= 1
            image = await anyio.to_thread.run_sync(check_upload, data, limiter=workers) if data is not None else None
            return fields, image
        body = await request.body()
        try:
            raw = json.loads(body)
        except RecursionError:
            raise _bad(400, "the JSON body is nested too deeply") from None
        except ValueError:
            raise _bad(422, "send a JSON object ({\"text\": ...}) or a multipart form with an image") from None
        if not isinstance(raw, dict):
            raise _bad(422, "send a JSON object ({\"text\": ...})")
        try:
            return model.model_validate(raw).model_dump(exclude_none=True), None
        except ValidationError as error:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in error.errors())
            raise _bad(422, problems) from None

    @app.get("/health")
    async def health() -> dict[str, Any]:
        index, manifest = engine.index, engine.index.manifest
        return {"status": "ok", "model": manifest["run"]["model"], "dataset": manifest["run"]["dataset"],
                "version": index.version, "items": {name: len(side) for name, side in index.sides.items()},
                "backend": manifest["backend"], "two_stage": engine.pairwise, "index_problem": watcher.problem}

    @app.post("/search")
    async def search(request: Request) -> dict[str, Any]:
        fields, image = await query_of(request, SearchBody)
        try:
            k = check_k(fields.get("k", 10), "k", limits.max_k)
            shortlist = check_k(fields.get("shortlist", engine.shortlist), "shortlist", limits.max_shortlist)
            try:
                min_score = fields.get("min_score")
                min_score = None if min_score in (None, "") else float(min_score)
            except (TypeError, ValueError):
                raise _bad(422, "min_score must be a number") from None
            if image is not None:
                query = {"image": "upload"}  # answered with the other uploads waiting then (QueryBatcher)
                hits, version, warning = await anyio.to_thread.run_sync(
                    lambda: batcher.search_image(image, k, shortlist, min_score), limiter=workers)
            else:
                text = check_text(fields.get("text"))
                query = {"text": text}  # answered with the other text queries waiting then
                hits, version, warning = await anyio.to_thread.run_sync(
                    lambda: batcher.search_text(text, k, shortlist, min_score), limiter=workers)
        finally:
            if image is not None:
                image.unlink(missing_ok=True)
        # An image's source is a path on this machine: the page asks /thumbnails for it instead.
        return {"query": query, "two_stage": engine.pairwise, "version": version, "warning": warning,
                "hits": [hit.as_dict() | ({"source": None} if hit.side == "images" else {}) for hit in hits]}

    @app.post("/explain")
    async def explain(request: Request) -> dict[str, Any]:
        fields, image = await query_of(request, ExplainBody)
        try:
            item = fields.get("item")
            if not isinstance(item, str) or not item:
                raise _bad(422, "name the indexed item to explain: {\"item\": ID, \"text\": ...}")
            if image is not None:
                attention = await in_worker(lambda: engine.explain_labelled(item, image=image))
            else:
                text = check_text(fields.get("text"))
                attention = await in_worker(lambda: engine.explain_labelled(item, text=text))
        finally:
            if image is not None:
                image.unlink(missing_ok=True)
        return {"item": item, "attention": attention_json(attention)}

    @app.get("/items/{item_id:path}")
    def item(item_id: str) -> dict[str, Any]:
        index = engine.index
        side, row = index.entry(item_id)
        entry = index.sides[side].entries[row]
        text = entry.source if side == "texts" else None
        meta = {key: value for key, value in entry.meta.items() if key != "content"}
        return {"id": entry.id, "side": side, "text": text, "meta": meta,
                "thumbnail": f"/thumbnails/{entry.id}" if side == "images" and entry.source else None}

    @app.get("/thumbnails/{item_id:path}")
    def thumbnail(item_id: str) -> Response:
        index = engine.index
        side, row = index.entry(item_id)
        entry = index.sides[side].entries[row]
        if side != "images" or not entry.source:
            raise _bad(404, f"item {item_id!r} has no image")
        try:
            image = load_rgb(Path(entry.source))  # a path the index lists, never one from the request
        except DataError:
            raise _bad(404, f"the image of item {item_id!r} is missing or unreadable on the server") from None
        image.thumbnail((limits.thumbnail_px, limits.thumbnail_px))
        return Response(image_png(image), media_type="image/png", headers={"Cache-Control": "max-age=3600"})

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(WEB / "index.html", media_type="text/html")

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> FileResponse:
        files = {path.name: path for path in WEB.iterdir() if path.suffix in (".js", ".css")}
        if name not in files:
            raise _bad(404, f"no static file {name!r}")
        media = "text/javascript" if name.endswith(".js") else "text/css"
        return FileResponse(files[name], media_type=media)

    app.state.watcher = watcher
    return app


class IndexWatcher:
    """Swaps the engine to a new version of its index when a writer publishes one, between queries."""

    def __init__(self, engine, model_lock: threading.Lock, every: float):
        self.engine, self.lock, self.every = engine, model_lock, every
        self.problem: str | None = None  # why the live version cannot be served (e.g. rebuilt with another run)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> bool:
        """Swap if the live version changed; True when it did."""
        try:
            changed = self.engine.stale()
            if changed:
                fresh = self.engine.reopened()  # opened and checked before the swap, outside the model lock
                with self.lock:
                    old, self.engine.index = self.engine.index, fresh
                old.close()
                logger.info("serving version %s of %s", fresh.version, fresh.folder)
            self.problem = None
            return changed
        except XmodalError as error:
            self.problem = str(error)
            logger.warning("the index cannot be swapped to its new version (%s); still serving %s", error,
                           self.engine.index.version)
            return False

    def start(self) -> None:
        if self._thread is None and self.every > 0:
            self._thread = threading.Thread(target=self._run, name="xmodal-index-watcher", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.check()


class _RequestHeadDeadline:
    """Mixed into uvicorn's HTTP protocol: close a connection whose request head is not complete in time.

    uvicorn times out idle keep-alive connections, but one that sends its headers a byte at a time
    (or nothing at all) is kept forever, so a few hundred slow clients can use up the connection
    limit. The deadline starts when the connection opens and again after each response; it closes
    the connection only while the client is still sending a request head.
    """

    header_timeout_s: float = Limits.header_timeout_s

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._heads_awaited = 0  # request heads this connection has been given a deadline for
        self._arm_head_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_head_deadline()

    def _arm_head_deadline(self) -> None:
        self._heads_awaited += 1  # an older deadline no longer counts
        self.loop.call_later(self.header_timeout_s, self._head_deadline_passed, self._heads_awaited)

    def _head_deadline_passed(self, awaited: int) -> None:
        import h11

        if awaited == self._heads_awaited and not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            logger.debug("closing a connection that sent no whole request head in %.0f s", self.header_timeout_s)
            self.transport.close()


def server_config(engine, host: str = "127.0.0.1", port: int = 8000, limits: Limits = Limits()):
    """The uvicorn configuration ``serve`` runs: timeouts for slow clients and a connection cap."""
    import uvicorn
    from uvicorn.protocols.http.h11_impl import H11Protocol

    protocol = type("XmodalH11Protocol", (_RequestHeadDeadline, H11Protocol),
                    {"header_timeout_s": limits.header_timeout_s})
    return uvicorn.Config(create_app(engine, limits), host=host, port=port, log_level="warning", http=protocol,
                          timeout_keep_alive=5, limit_concurrency=limits.max_connections,
                          h11_max_incomplete_event_size=16 * 1024)


def serve(engine, host: str = "127.0.0.1", port: int = 8000, limits: Limits = Limits()) -> None:
    import uvicorn

    if host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning("serving on %s: anyone who can reach this address can query the index", host)
    logger.info("serving %s on http://%s:%d/ (API schema at /openapi.json)", engine.index.folder, host, port)
    uvicorn.Server(server_config(engine, host, port, limits)).run()
