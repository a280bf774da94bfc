"""How much of one search query a trained run's text side knows, and the warning when it is little.

A query in a script or words the run never learnt still gets results, ranked by whatever its
unknown tokens map to; this says so beside them (CLI, ``--json``, ``POST /search``, the page).
"""

from __future__ import annotations

from xmodal.encoders.coverage import Coverage, glove_coverage, minilm_coverage
from xmodal.encoders.minilm import load_tokenizer
from xmodal.encoders.tfidf import best_reading
from xmodal.encoders.tokenize import tokenize
from xmodal.features.pipeline import InputPipeline

# A query the run's text side reads less of than this gets a warning with its results.
QUERY_LOW_SHARE = 0.5


def query_coverage(pipeline: InputPipeline, text: str) -> list[Coverage]:
    """What a run's text side knows of one query, per text input it reads: ``words`` the run's vocabulary
    (unknown words share one id), ``tokens`` / ``global`` MiniLM's word pieces other than ``[UNK]`` and,
    as the English lexicon behind them, the words GloVe knows (a misspelt or made-up word splits into
    known pieces but is no word), ``tfidf`` the words or the character n-grams that are columns
    (whichever part reads more), ``bow`` the graph's
    words."""
    reports = []
    for kind in pipeline.spec.text_parts:
        if kind == "words":
            vocabulary = pipeline.state("text.words")
            tokens = tokenize(text)
            reports.append(Coverage("vocabulary", "words", sum(t in vocabulary.index for t in tokens), len(tokens), 1))
        elif kind == "bow":
            vertices = set(pipeline.state("text.bow"))
            tokens = tokenize(text)
            reports.append(Coverage("word graph", "words", sum(t in vertices for t in tokens), len(tokens), 1))
        elif kind == "tfidf":
            part, known, total = best_reading(pipeline.state("text.tfidf"), text)
            reports.append(Coverage("tfidf", "words" if part == "word" else "character n-grams", known, total, 1))
        elif kind in ("tokens", "global"):
            tokenizer = pipeline.encoder("minilm-tokenizer", load_tokenizer)  # loaded once per run
            reports += [minilm_coverage([text], pipeline.options.max_text_tokens, tokenizer), glove_coverage([text])]
    return reports


def query_warning(pipeline: InputPipeline, text: str, threshold: float = QUERY_LOW_SHARE) -> str | None:
    """One sentence when the run's text side knows less than ``threshold`` of the query, else None."""
    low = [report for report in query_coverage(pipeline, text) if report.share < threshold]
    if not low:
        return None
    known = "; ".join(f"{report.encoder} knows {report.known} of its {report.total} {report.unit}" for report in low)
    return (f"this run can hardly read the query {text!r} ({known}): the results are close to arbitrary; "
            f"check the spelling, or search with a run trained on texts in the query's language")
