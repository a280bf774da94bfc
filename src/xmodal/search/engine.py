"""Search an index with its run: text queries find images, image queries find texts.

A model whose score is the cosine of two global vectors (:class:`~xmodal.models.base.EmbeddingModel`)
is searched in one stage: the backend's top k is the answer. Every other model is searched in two
stages (JGCAR section 2.4, :mod:`xmodal.eval.two_stage`): the backend's top ``shortlist`` by
first-stage cosine, then the model's own ``similarity`` of the query with each shortlisted item,
sorted. With the ``exact`` backend this is the ranking that ``xmodal eval --shortlist K`` scores.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from xmodal.encoders.minilm import load_tokenizer
from xmodal.encoders.tokenize import tokenize
from xmodal.errors import XmodalError
from xmodal.models.base import Attention, EmbeddingModel, Rep, rep_to, take
from xmodal.search.index import SearchIndex, SideName, rep_rows, run_identity
from xmodal.search.query_check import query_warning
from xmodal.search.vector_index import ExactIndex, unit_rows
from xmodal.search.versions import live_name
from xmodal.trained import TrainedRun, load_run

DEFAULT_SHORTLIST = 100
MAX_K = 1000


@dataclass
class Hit:
    rank: int
    id: str
    score: float  # the model's score (stage 2 for pairwise models)
    side: SideName
    source: str | None  # the image file, or the text itself
    first_stage: float  # the cosine the backend ranked by
    meta: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class SearchEngine:
    """An opened index and the trained run that built it (the run is checked against the index)."""

    def __init__(self, index: SearchIndex, run: TrainedRun, shortlist: int = DEFAULT_SHORTLIST):
        index.check_run(run_identity(run))
        self.index = index
        self.run = run
        self.shortlist = shortlist
        self.pairwise = not isinstance(run.model, EmbeddingModel)
        for side in index.sides.values():
            if isinstance(side.vectors, ExactIndex):  # first stage on the run's device (GPU when it has one)
                side.vectors.to(run.device)

    def stale(self) -> bool:
        """Whether a writer published a newer version of the index than the one searched."""
        return live_name(self.index.folder) != self.index.version

    def reopened(self) -> SearchIndex:
        """The index's live version, opened and checked against the run, ready to swap in."""
        index = SearchIndex.open(self.index.folder)
        index.check_run(run_identity(self.run))
        for side in index.sides.values():
            if isinstance(side.vectors, ExactIndex):
                side.vectors.to(self.run.device)
        return index

    @classmethod
    def open(cls, index_folder: str | Path, run_folder: str | Path | None = None, device: str | None = None,
             shortlist: int = DEFAULT_SHORTLIST) -> "SearchEngine":
        index = SearchIndex.open(index_folder)
        folder = Path(run_folder) if run_folder is not None else index.run_folder
        run = load_run(folder, index.manifest["run"]["checkpoint"], device, allow_changed=True)
        return cls(index, run, shortlist)

    # -- queries -----------------------------------------------------------------------------
    def encode_text(self, text: str) -> Rep:
        return self.encode_texts([text])

    def encode_texts(self, texts: Sequence[str]) -> Rep:
        for text in texts:
            if not text or not text.strip():
                raise XmodalError("the query text is empty; type some words")
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:  # bytes the terminal's encoding could not decode (argv's surrogateescape)
                raise XmodalError(f"the query text {ascii(text)} is not valid UTF-8; type it in UTF-8") from None
        return self.run.encode_texts(list(texts))

    def query_warning(self, text: str) -> str | None:
        """A sentence when the run's text side can hardly read ``text``
        (:func:`xmodal.search.query_check.query_warning`), else None."""
        return query_warning(self.run.pipeline, text)

    def encode_image(self, image: str | Path | Image.Image) -> Rep:
        return self.run.encode_images([image])

    def search_text(self, text: str, k: int = 10, shortlist: int | None = None,
                    min_score: float | None = None) -> list[Hit]:
        """The images that best match ``text``."""
        return self.search_texts([text], k, shortlist, min_score)[0]

    def search_texts(self, texts: Sequence[str], k: int = 10, shortlist: int | None = None,
                     min_score: float | None = None) -> list[list[Hit]]:
        """Several text queries at once, each answered as :meth:`search_text` answers it: one encoding
        batch and one backend search for all of them (how the server answers queries that arrive
        together), then each query's own rerank for a pairwise model."""
        return self._search(self.encode_texts(texts), "images", k, shortlist, min_score)

    def search_image(self, image: str | Path | Image.Image, k: int = 10, shortlist: int | None = None,
                     min_score: float | None = None) -> list[Hit]:
        """The texts that best match ``image``."""
        return self.search_images([image], k, shortlist, min_score)[0]

    def search_images(self, images: Sequence[str | Path | Image.Image], k: int = 10, shortlist: int | None = None,
                      min_score: float | None = None) -> list[list[Hit]]:
        """Several image queries at once, each answered as :meth:`search_image` answers it (one
        encoding batch, one backend search, each query's own rerank)."""
        return self._search(self.run.encode_images(list(images)), "texts", k, shortlist, min_score)

    @torch.no_grad()
    def _search(self, queries: Rep, target: SideName, k: int, shortlist: int | None,
                min_score: float | None) -> list[list[Hit]]:
        """The hits of each query (a row of ``queries``) among the ``target`` side."""
        if not 1 <= k <= MAX_K:
            raise XmodalError(f"k must be between 1 and {MAX_K} (got {k})")
        side = self.index.sides[target]
        if side.vectors is None or not len(side):
            raise XmodalError(f"index {self.index.folder} holds no {target} to search; "
                              f"{'a text query finds images' if target == 'images' else 'an image query finds texts'}")
        depth = max(k, shortlist or self.shortlist) if self.pairwise else k
        all_cosines, all_keys = side.vectors.search(unit_rows(self.run.model.embed(queries)), depth)
        return [self._hits(take(queries, slice(row, row + 1)), side, target, cosines, keys, k, min_score)
                for row, (cosines, keys) in enumerate(zip(all_cosines, all_keys))]

    def _hits(self, query: Rep, side, target: SideName, cosines: np.ndarray, keys: np.ndarray, k: int,
              min_score: float | None) -> list[Hit]:
        """One query's hits from its first-stage candidates: reranked by ``similarity`` for a pairwise model."""
        found = keys >= 0  # faiss pads with -1 when it finds fewer
        cosines, keys = cosines[found], keys[found]
        rows = side.rows_of(keys)
        if self.pairwise:
            model = self.run.model
            candidates = rep_rows(side, rows)
            query_on, candidates = rep_to(query, self.run.device), rep_to(candidates, self.run.device)
            scores = (model.similarity(candidates, query_on)[:, 0] if target == "images"
                      else model.similarity(query_on, candidates)[0]).float().cpu().numpy()
            order = np.argsort(-scores, kind="stable")
        else:
            scores, order = cosines, np.arange(len(rows))
        hits = []
        for position in order[:k]:
            score = float(scores[position])
            if min_score is not None and score < min_score:
                break
            entry = side.entries[rows[position]]
            hits.append(Hit(len(hits) + 1, entry.id, score, target, entry.source, float(cosines[position]),
                            entry.meta))
        return hits

    # -- attention ---------------------------------------------------------------------------
    @torch.no_grad()
    def explain(self, item_id: str, text: str | None = None, image: str | Path | Image.Image | None = None
                ) -> Attention | None:
        """The attention behind the score of a query (``text`` or ``image``) with an indexed item."""
        if (text is None) == (image is None):
            raise XmodalError("explain needs exactly one query: a text or an image")
        name, row = self.index.entry(item_id)
        if (name == "images") == (text is None):
            raise XmodalError(f"item {item_id!r} is {'an image' if name == 'images' else 'a text'}: explain it "
                              f"with {'a text' if name == 'images' else 'an image'} query")
        item = rep_rows(self.index.sides[name], [row])
        query = self.encode_text(text) if text is not None else self.encode_image(image)
        images, texts = (item, query) if name == "images" else (query, item)
        device = self.run.device
        return self.run.model.explain(rep_to(images, device), rep_to(texts, device))

    def explain_labelled(self, item_id: str, text: str | None = None,
                         image: str | Path | Image.Image | None = None) -> Attention | None:
        """:meth:`explain`, with the text's positions named by its tokens (for a page to show words)."""
        attention = self.explain(item_id, text=text, image=image)
        if text is None:
            name, row = self.index.entry(item_id)
            text = self.index.sides[name].entries[row].source or ""
        return label_words(attention, text)


def text_labels(text: str) -> list[list[str]]:
    """Ways a text's positions may be laid out by a model's word input: GloVe words, MiniLM word pieces
    (with and without [CLS]/[SEP]). A map's word axis takes the one of its length."""
    pieces = load_tokenizer().tokenize(text)
    return [tokenize(text), ["[CLS]", *pieces, "[SEP]"], pieces]


def label_words(attention: Attention | None, text: str) -> Attention | None:
    """Name the word positions of ``attention``'s maps with the text's tokens, where the count fits."""
    if attention is None:
        return None
    for attention_map in attention.maps.values():
        if "word" in attention_map.axes and "word" not in attention_map.labels:
            fitting = [labels for labels in text_labels(text) if len(labels) == attention_map.size("word")]
            if fitting:
                attention_map.labels["word"] = fitting[0]
    return attention


def hits_table(hits: Sequence[Hit]) -> str:
    """A plain-text table of hits for the terminal."""
    if not hits:
        return "no results"
    lines = [f"{'rank':>4}  {'score':>8}  id  (caption or text)"]
    for hit in hits:
        shown = hit.meta.get("caption", "") if hit.side == "images" else (hit.source or "")
        shown = shown if len(shown) <= 70 else shown[:67] + "..."
        lines.append(f"{hit.rank:>4}  {hit.score:8.4f}  {hit.id}  {shown}")
    return "\n".join(lines)
