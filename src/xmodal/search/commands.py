"""The search verbs of the command line: ``xmodal index build|add|remove|info``, ``search``, ``serve``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable

from xmodal.errors import XmodalError


def add_search_verbs(add_verb: Callable[..., argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    from xmodal.search.engine import DEFAULT_SHORTLIST
    from xmodal.search.recall import MIN_ASKING_QUERIES
    from xmodal.search.vector_index import BACKENDS, EXACT_DTYPES, FAISS_KINDS

    index = add_verb("index", help="encode a collection with a trained run into a search index")
    index_verbs = index.add_subparsers(dest="index_verb", required=True)
    build = index_verbs.add_parser("build", parents=[common], help="encode a collection into a new index")
    build.add_argument("run", type=Path, nargs="?", help="a trained run folder (xmodal train --out); none with --model")
    build.add_argument("--model", default=None, metavar="NAME",
                       help="a model that needs no training (conse: zero-shot from the ImageNet classifier and "
                            "MiniLM) instead of a run: index a folder of photos with no captions at once")
    build.add_argument("--collection", required=True, metavar="SPEC",
                       help="split:test (the run's own dataset split), a folder of images, a .csv/.jsonl collection "
                            "file or a .txt file of texts")
    build.add_argument("--out", type=Path, required=True, help="the index folder")
    build.add_argument("--backend", default="exact", choices=BACKENDS.names(),
                       help="first-stage vectors: exact (matrix product), faiss, milvus")
    build.add_argument("--faiss-kind", default="flat", choices=FAISS_KINDS, help="with --backend faiss")
    build.add_argument("--faiss-refine", action="store_true",
                       help="with --faiss-kind ivfpq: keep the float32 vectors too and rescore the candidates the "
                            "compressed codes propose (recall back, at 4 bytes a dimension)")
    build.add_argument("--recall-target", type=float, default=None, metavar="R",
                       help="choose the search settings (HNSW ef_search; IVF nprobe and refine k_factor) as the "
                            "cheapest whose recall@10 against exact search reaches R (its 95%% lower bound) on 200 "
                            "queries from the other side of the collection (its own sampled items when that side "
                            f"has fewer than {MIN_ASKING_QUERIES}); the measured recall is kept and shown by xmodal "
                            "index info")
    build.add_argument("--dtype", default="float32", choices=list(EXACT_DTYPES),
                       help="with --backend exact: how the vectors are stored; 16 bits halve the memory a search "
                            "reads (scores rounded: see benchmarks/results/search.md)")
    build.add_argument("--milvus-uri", default=None,
                       help="with --backend milvus: a server URI (http://host:19530); default Milvus Lite in INDEX")
    build.add_argument("--checkpoint", default="best", choices=["best", "last"])
    build.add_argument("--overwrite", action="store_true", help="replace an existing index at --out")
    build.add_argument("--skip-bad", action="store_true",
                       help="skip unreadable images and bad records or caption files, count and list them")
    add = index_verbs.add_parser("add", parents=[common], help="encode and add new items, keep the rest")
    add.add_argument("index", type=Path)
    add.add_argument("paths", nargs="+", help="image files, folders of images, or .csv/.jsonl/.txt collections")
    add.add_argument("--skip-bad", action="store_true",
                     help="skip unreadable images and bad records or caption files, count and list them")
    remove = index_verbs.add_parser("remove", parents=[common], help="remove items by id")
    remove.add_argument("index", type=Path)
    remove.add_argument("ids", nargs="+")
    info = index_verbs.add_parser("info", parents=[common], help="what an index holds and what built it")
    info.add_argument("index", type=Path)

    search = add_verb("search", help="query an index with a text (finds images) or an image (finds texts)")
    search.add_argument("index", type=Path)
    query = search.add_mutually_exclusive_group(required=True)
    query.add_argument("--text", help="a text query")
    query.add_argument("--image", type=Path, help="an image file query")
    search.add_argument("-k", "--top", dest="k", type=int, default=10, help="results to show (default 10)")
    search.add_argument("--shortlist", type=int, default=DEFAULT_SHORTLIST, metavar="K",
                        help="pairwise models: rerank the first stage's top K (default %(default)s)")
    search.add_argument("--min-score", type=float, default=None, help="drop results scoring below this")
    search.add_argument("--run", type=Path, default=None, help="the run folder, if it moved since the index was built")
    search.add_argument("--device", default=None, help="auto, cpu or cuda")
    search.add_argument("--json", action="store_true", help="print one JSON object")

    serve = add_verb("serve", help="serve an index: REST API and a web page with the attention maps")
    serve.add_argument("index", type=Path)
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s: this machine only)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--run", type=Path, default=None, help="the run folder, if it moved since the index was built")
    serve.add_argument("--device", default=None, help="auto, cpu or cuda")
    serve.add_argument("--shortlist", type=int, default=DEFAULT_SHORTLIST, metavar="K",
                       help="pairwise models: rerank the first stage's top K (default %(default)s)")
    serve.add_argument("--max-upload-mb", type=int, default=10, help="largest image upload (default %(default)s MB)")
    serve.add_argument("--max-image-pixels", type=int, default=40_000_000,
                       help="largest uploaded image in pixels (default %(default)s)")
    serve.add_argument("--batch", type=int, default=32, metavar="N",
                       help="answer up to N queries that wait for the model together in one batched search "
                            "per kind, texts and uploaded images (default %(default)s; 1: one at a time)")


def cmd_index_build(args: argparse.Namespace) -> None:
    from xmodal.api import load_run
    from xmodal.search.collection import read_collection
    from xmodal.search.index import SearchIndex

    run = load_run(_run_folder(args), args.checkpoint, allow_changed=True)
    collection = read_collection(args.collection, lambda: run.dataset, skip_bad=args.skip_bad)
    options = _backend_options(args)
    index = SearchIndex.build(run, collection, args.out, args.backend, options, overwrite=args.overwrite,
                              recall_target=args.recall_target)
    summary = _summary(index)
    index.close()
    print(summary + _skipped(collection))


def _run_folder(args: argparse.Namespace) -> Path:
    """The run to index with: the one given, or the zero-shot model's (made on first use)."""
    from xmodal.zero_shot import zero_shot_run

    if (args.run is None) == (args.model is None):
        raise XmodalError("index build needs a run folder or --model NAME (a model that needs no training, such as "
                          "conse), not both")
    if args.model is not None:
        if args.collection.startswith("split:"):
            raise XmodalError(f"--collection {args.collection}: a zero-shot model has no dataset splits; give a "
                              "folder of images, a .csv/.jsonl collection or a .txt of texts")
        return zero_shot_run(args.model)
    return args.run


def _backend_options(args: argparse.Namespace) -> dict[str, Any]:
    if args.backend != "exact" and args.dtype != "float32":
        raise XmodalError(f"--dtype {args.dtype} is an option of --backend exact; {args.backend} stores float32")
    if args.faiss_refine and (args.backend, args.faiss_kind) != ("faiss", "ivfpq"):
        raise XmodalError("--faiss-refine is an option of --backend faiss --faiss-kind ivfpq (HNSW and flat "
                          "already score with the stored vectors)")
    if args.backend == "faiss":
        return {"kind": args.faiss_kind, **({"refine": True, "k_factor": 16} if args.faiss_refine else {})}
    if args.backend == "milvus":
        return {"uri": args.milvus_uri} if args.milvus_uri else {}
    return {"dtype": args.dtype}


def cmd_index_add(args: argparse.Namespace) -> None:
    from xmodal.api import load_run
    from xmodal.search.collection import Collection, read_collection, single_image
    from xmodal.search.index import SearchIndex, run_identity

    merged = Collection("", [], [], skip_bad=args.skip_bad)
    for path in args.paths:
        part = (single_image(Path(path)) if Path(path).is_file() and _is_image(Path(path))
                else read_collection(path, skip_bad=args.skip_bad))
        merged.images += part.images
        merged.texts += part.texts
        merged.skipped += part.skipped
    with SearchIndex.updating(args.index) as index:  # other writers wait: none loses the other's items
        run = load_run(index.run_folder, index.manifest["run"]["checkpoint"], allow_changed=True)
        index.check_run(run_identity(run))
        merged.spec = index.manifest["collection"]
        counts = index.add(run, merged)
        summary = _summary(index)
    print(f"added {counts['images']} image(s) and {counts['texts']} text(s)"
          + (f"; {counts['already_indexed']} were indexed already" if counts["already_indexed"] else ""))
    print(summary + _skipped(merged))


def _is_image(path: Path) -> bool:
    from xmodal.data.collection import IMAGE_SUFFIXES

    return path.suffix.lower() in IMAGE_SUFFIXES


def cmd_index_remove(args: argparse.Namespace) -> None:
    from xmodal.search.index import SearchIndex

    with SearchIndex.updating(args.index) as index:
        removed = index.remove(args.ids)
        summary = _summary(index)
    print(f"removed {removed} item(s)")
    print(summary)


def cmd_index_info(args: argparse.Namespace) -> None:
    from xmodal.search.index import SearchIndex

    index = SearchIndex.open(args.index)
    summary = _summary(index)
    index.close()
    print(summary)


def _skipped(collection) -> str:
    if not collection.skipped:
        return ""
    shown = "".join(f"\n  {problem}" for problem in collection.skipped[:10])
    more = f"\n  ... and {len(collection.skipped) - 10} more" if len(collection.skipped) > 10 else ""
    return f"\nleft out {len(collection.skipped)}:{shown}{more}"


def _summary(index) -> str:
    manifest = index.manifest
    run = manifest["run"]
    sides = ", ".join(f"{len(side)} {name}" for name, side in index.sides.items())
    recalls = "".join(_recall_line(name, side.vectors.options.get("recall")) for name, side in index.sides.items()
                      if side.vectors is not None and side.vectors.options.get("recall"))
    return (f"index {index.folder}: {sides}; backend {manifest['backend']}"
            f"{' ' + json.dumps(manifest['options']) if manifest['options'] else ''}\n{recalls}"
            f"built from {manifest['collection']} with {run['model']} ({run['folder']}, {run['checkpoint']} "
            f"checkpoint, sha256 {run['sha256'][:12]})")


def _recall_line(side: str, recall: dict[str, Any]) -> str:
    settings = recall.get("settings") or {}
    bound = f", 95% lower bound {recall['lower_bound']:.3f}" if "lower_bound" in recall else ""
    return (f"{side}: recall@{recall['k']} {recall['recall_at_k']:.3f}{bound} against exact search (target "
            f"{recall['target']}), measured at build on {_probe_queries(recall)}"
            f"{' with ' + json.dumps(settings) if settings else ''}\n")


def _probe_queries(recall: dict[str, Any]) -> str:
    asked_by = recall.get("queries_from", "items")  # indexes built before it was recorded: items
    if asked_by == "items":
        return f"{recall['queries']} sampled items of {recall['items']}"
    return f"{recall['queries']} queries from {asked_by}, against its {recall['items']} items"


def cmd_search(args: argparse.Namespace) -> None:
    from xmodal.search.engine import SearchEngine, hits_table

    engine = SearchEngine.open(args.index, args.run, args.device, args.shortlist)
    warning = None
    if args.text is not None:
        hits = engine.search_text(args.text, args.k, min_score=args.min_score)
        warning = engine.query_warning(args.text)
    else:
        if not args.image.is_file():
            raise XmodalError(f"{args.image}: no such image file")
        hits = engine.search_image(args.image, args.k, min_score=args.min_score)
    if args.json:
        query = {"text": args.text} if args.text is not None else {"image": str(args.image)}
        print(json.dumps({"query": query, "model": engine.run.config.model.name, "two_stage": engine.pairwise,
                          "shortlist": args.shortlist if engine.pairwise else None, "warning": warning,
                          "hits": [hit.as_dict() for hit in hits]}, ensure_ascii=False))
    else:
        if warning:
            print(f"warning: {warning}", file=sys.stderr)
        print(hits_table(hits))


def cmd_serve(args: argparse.Namespace) -> None:
    from xmodal.search.engine import SearchEngine
    from xmodal.search.service import Limits, serve

    if args.batch < 1:
        raise XmodalError(f"--batch {args.batch}: give N >= 1 (1 answers one query at a time)")
    engine = SearchEngine.open(args.index, args.run, args.device, args.shortlist)
    print(f"serving {args.index} on http://{args.host}:{args.port}/ (Ctrl-C stops)", flush=True)
    serve(engine, args.host, args.port, Limits(max_upload_bytes=args.max_upload_mb * 1024 * 1024,
                                               max_image_pixels=args.max_image_pixels, max_batch=args.batch,
                                               workers=max(4, args.batch)))


COMMANDS = {("index", "build"): cmd_index_build, ("index", "add"): cmd_index_add,
            ("index", "remove"): cmd_index_remove, ("index", "info"): cmd_index_info, ("search", None): cmd_search,
            ("serve", None): cmd_serve}
