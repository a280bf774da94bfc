"""The ``xmodal`` command line: a thin layer over the library.

Errors caused by input (:class:`xmodal.errors.XmodalError`) are printed as one message and exit
with status 2; nothing the user can fix is shown as a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

from xmodal.errors import XmodalError


def _add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="dataset name (see `xmodal data info --help` for the list)")
    parser.add_argument("--path", type=Path, default=None, help="where the dataset lives (file or folder)")
    parser.add_argument("--skip-bad", action="store_true", help="skip bad records, count and report them")
    parser.add_argument("--image-root", type=Path, default=None,
                        help="folder that relative image paths resolve against (csv, karpathy; default: the list "
                             "file's folder)")
    parser.add_argument("--source", default=None, help="mosaic: the reader of the photos at --path (default: detected)")
    parser.add_argument("--grid", default=None, help="mosaic: rows x columns of tiles, e.g. 2x2 (the default)")
    parser.add_argument("--tile", type=int, default=None,
                        help="mosaic: tile size in px, a multiple of 32 (default 224; the mosaic configs use 128)")
    parser.add_argument("--lang", default=None,
                        help="emoji: the texts' language, a CLDR locale such as zh, ja, ru (default: English)")


def _verbosity_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    loudness = common.add_mutually_exclusive_group()
    loudness.add_argument("-q", "--quiet", dest="verbosity", action="store_const", const=-1, default=0,
                          help="print warnings and results only")
    loudness.add_argument("-v", "--verbose", dest="verbosity", action="store_const", const=1,
                          help="print debug lines too")
    return common


def build_parser() -> argparse.ArgumentParser:
    from xmodal.data.images import DEFAULT_MAX_PIXELS
    from xmodal.data.registry import dataset_names
    from xmodal.features.extractors import EXTRACTORS, default_extractors
    from xmodal.search.commands import add_search_verbs

    parser = argparse.ArgumentParser(prog="xmodal", description="Attention-based image-text cross-modal retrieval.")
    verbs = parser.add_subparsers(dest="verb", required=True)
    common = _verbosity_parser()
    # Every verb takes -q/-v: progress goes to stderr as log lines, results to stdout.
    add_verb = lambda name, **kwargs: verbs.add_parser(name, parents=[common], **kwargs)

    data = add_verb("data", help="fetch datasets and describe them")
    data_verbs = data.add_subparsers(dest="data_verb", required=True)
    fetch = data_verbs.add_parser("fetch", parents=[common], help="download a dataset that can be fetched (emoji)")
    fetch.add_argument("name", choices=["emoji"])
    fetch.add_argument("--path", type=Path, default=None, help="use the tarballs in this folder instead of npm")
    fetch.add_argument("--lang", action="append", default=[], metavar="LOCALE",
                       help="also the texts in this CLDR locale (zh, ja, ru, ...; repeat for several)")
    info = data_verbs.add_parser("info", parents=[common], help="counts per split and per label",
                                 description="datasets: " + ", ".join(dataset_names()))
    _add_dataset_arguments(info)
    info.add_argument("--check", action="store_true",
                      help="also decode every image (in worker processes, as extraction would) and list the bad ones")
    info.add_argument("--max-image-pixels", type=int, default=DEFAULT_MAX_PIXELS, metavar="N",
                      help="with --check: the pixel limit extraction will apply (0: no limit)")

    extract = add_verb("extract", help="run the frozen encoders once and cache the features")
    _add_dataset_arguments(extract)
    extract.add_argument("--encoders", default=",".join(default_extractors()),
                         help=f"comma-separated, from {', '.join(EXTRACTORS)} (default: "
                              f"{', '.join(default_extractors())})")
    extract.add_argument("--resolution", type=int, default=224, help="image size in px: 224 -> 7x7 grid, 448 -> 14x14")
    extract.add_argument("--batch-size", type=int, default=32)
    extract.add_argument("--device", default="auto", help="auto (GPU when present), cpu or cuda[:N]")
    extract.add_argument("--force", action="store_true", help="recompute even when cached")
    extract.add_argument("--shard", default=None, metavar="I/N",
                         help="encode only shard I of N of the images (run N processes, 0/N .. N-1/N, on one "
                              "machine or several sharing XMODAL_HOME); the last to finish builds the view. Under "
                              "torchrun the shard is the process's RANK of WORLD_SIZE")
    extract.add_argument("--max-image-pixels", type=int, default=DEFAULT_MAX_PIXELS, metavar="N",
                         help=f"refuse images over N pixels as possible decompression bombs "
                              f"(default {DEFAULT_MAX_PIXELS:,}; 0: no limit)")

    add_verb("models", help="list the registered models, the inputs each needs and the shipped configs")

    train = add_verb("train", help="train a model from a config")
    train.add_argument("--config", required=True,
                       help="a shipped config name (dual/emoji, gpldan/emoji-search: `xmodal models` lists them) "
                            "or a YAML file")
    train.add_argument("--out", type=Path, required=True, help="run folder (checkpoints, log, curves)")
    train.add_argument("--path", type=Path, default=None,
                       help="where the dataset lives (same as --set data.path=...; or $XMODAL_DATA_<DATASET>)")
    train.add_argument("--image-root", type=Path, default=None,
                       help="folder relative image paths resolve against (same as --set data.image_root=...)")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config value, e.g. --set optim.lr=1e-3 (repeatable)")
    train.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")
    train.add_argument("--skip-bad", action="store_true",
                       help="skip bad records and unreadable images, count them and list them in RUN/skipped.txt "
                            "(same as --set data.skip_bad=true)")

    evaluate = add_verb("eval", help="evaluate a trained run under every protocol its dataset supports")
    evaluate.add_argument("run", type=Path)
    evaluate.add_argument("--split", default="test", choices=["train", "val", "test"])
    evaluate.add_argument("--checkpoint", default="best", choices=["best", "last"])
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.add_argument("--device", default=None, help="override the run's device (auto, cpu, cuda)")
    evaluate.add_argument("--shortlist", type=int, default=None, metavar="K",
                          help="two-stage ranking: rerank the top K candidates of the global first stage "
                               "(0: score every pair; default: the run's eval.shortlist)")
    evaluate.add_argument("--first-stage", type=Path, default=None, metavar="RUN",
                          help="with --shortlist K: shortlist by the global vectors of this run of an embedding "
                               "model (cca, dual, conse, ...) trained on the same data, not the model's own")
    evaluate.add_argument("--protocol", default=None, metavar="NAME",
                          help="the field's test protocols (plain, coco-1k, coco-5k, flickr30k-1k): coco-1k ranks "
                               "5 folds of 1,000 images against their own captions and averages (SCAN's fold5); "
                               "coco-5k and flickr30k-1k rank the whole split (default: the whole split, unnamed)")
    evaluate.add_argument("--allow-changed", action="store_true",
                          help="evaluate even if the data changed since training, on the items the run recorded")

    add_search_verbs(add_verb, common)

    run_verb = add_verb("run", help="look after a trained run folder")
    run_verbs = run_verb.add_subparsers(dest="run_verb", required=True)
    complete = run_verbs.add_parser("complete", parents=[common],
                                    help="write RUN/inputs/ (what encoding new images and texts needs) of a run "
                                         "trained before runs kept it, from its data")
    complete.add_argument("run", type=Path)
    complete.add_argument("--path", type=Path, default=None, help="where the run's dataset lives now")

    export = add_verb("export", help="write a trained run as one file (NAME.xmodal) that load_run, index build, "
                                     "search and serve accept")
    export.add_argument("run", type=Path)
    export.add_argument("-o", "--out", type=Path, required=True, help="the file to write, NAME.xmodal")
    export.add_argument("--checkpoint", default="best", choices=["best", "last"])

    demo = add_verb("demo", help="the main job: fetch emoji, extract, train, evaluate, report")
    demo.add_argument("--path", type=Path, default=None,
                      help="the dataset's folder (emoji: a folder holding the two npm tarballs; else npm)")
    demo.add_argument("--out", type=Path, default=Path("runs/demo"),
                      help="run folder (reused when nothing changed, replaced when the config did)")
    choice = demo.add_mutually_exclusive_group()
    choice.add_argument("--model", default=None, help="train MODEL/emoji (default: the best model on emoji)")
    choice.add_argument("--config", default=None, help="train this config (a shipped name or a YAML file) instead")
    demo.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    demo.add_argument("--retrain", action="store_true", help="train again even if --out holds the same finished run")
    return parser


def cmd_demo(args: argparse.Namespace) -> None:
    from xmodal.demo import demo_config, format_demo, run_demo

    print(format_demo(run_demo(args.out, args.path, demo_config(args.model, args.config), args.overrides,
                        retrain=args.retrain)))


def cmd_data_fetch(args: argparse.Namespace) -> None:
    from xmodal.data.emoji import fetch_annotations, fetch_emoji

    print(f"emoji data ready in {fetch_emoji(args.path)}")
    for lang in args.lang:
        print(f"emoji texts in {lang} ready in {fetch_annotations(lang, args.path)}")


def _load_dataset(args: argparse.Namespace):
    from xmodal.api import load_dataset

    options = {"image_root": args.image_root, "source": args.source, "grid": args.grid, "tile": args.tile,
               "lang": args.lang}
    return load_dataset(args.name, args.path, skip_bad=args.skip_bad,
                        **{key: value for key, value in options.items() if value is not None})


def cmd_data_info(args: argparse.Namespace) -> int:
    from xmodal.encoders.coverage import dataset_coverage

    dataset = _load_dataset(args)
    print(describe_dataset(dataset))
    if dataset.text_kind == "raw":  # what the English text encoders know of the texts
        print("\n".join(["text coverage:", *dataset_coverage(dataset)]))
    if args.check:
        import time

        from xmodal.data.check import check_images

        started = time.perf_counter()
        result = check_images(dataset, max_pixels=args.max_image_pixels)
        print(f"checked {result.checked} image(s) in {time.perf_counter() - started:.1f} s: "
              f"{len(result.bad)} bad{' (extraction needs --skip-bad, or fix them)' if result.bad else ''}")
        for item_id, problem in result.bad:
            print(f"  {item_id}: {problem}")
        return 1 if result.bad else 0
    return 0


def describe_dataset(dataset) -> str:
    """The summary `xmodal data info` prints: splits, texts and per-label counts."""
    splits = dataset.split_counts()
    lines = [f"dataset {dataset.name}  ({dataset.source})",
             f"items {len(dataset)}  texts {sum(len(item.texts) for item in dataset)}  "
             f"images: {dataset.image_kind}  texts: {dataset.text_kind}"]
    lines.append("split   " + "".join(f"{split:>8}" for split in splits) + f"{'total':>8}")
    lines.append("items   " + "".join(f"{count:>8}" for count in splits.values()) + f"{len(dataset):>8}")
    if dataset.label_names:
        lines.append(f"{len(dataset.label_names)} labels" + "".join(
            f"  {name}: {len(names)}" for name, names in dataset.extra_label_names.items()))
        per_split = {split: dataset.label_counts(split) for split in splits}
        width = max(len(name) for name in dataset.label_names) + 2
        lines.append(f"{'label':<{width}}" + "".join(f"{split:>8}" for split in splits) + f"{'total':>8}")
        for name in dataset.label_names:
            counts = [per_split[split][name] for split in splits]
            lines.append(f"{name:<{width}}" + "".join(f"{c:>8}" for c in counts) + f"{sum(counts):>8}")
    lines += dataset.notes
    if dataset.skipped:
        lines.append(f"skipped {len(dataset.skipped)} bad record(s) (--skip-bad):")
        lines += [f"  {problem}" for problem in dataset.skipped[:5]]
        if len(dataset.skipped) > 5:
            lines.append(f"  ... and {len(dataset.skipped) - 5} more (train --skip-bad lists all in RUN/skipped.txt)")
    return "\n".join(lines)


def cmd_extract(args: argparse.Namespace) -> None:
    from xmodal.device import resolve_device
    from xmodal.encoders.image import check_resolution
    from xmodal.features.extract import ExtractOptions, extract, extract_shard
    from xmodal.features.extractors import EXTRACTORS
    from xmodal.features.shards import Shard

    check_resolution(args.resolution, "--resolution")
    if args.batch_size < 1:
        raise XmodalError(f"--batch-size {args.batch_size}: give at least 1 (images encoded per step)")
    dataset = _load_dataset(args)
    options = ExtractOptions(image_resolution=args.resolution, batch_size=args.batch_size,
                             device=resolve_device(args.device), skip_bad=args.skip_bad,
                             max_image_pixels=args.max_image_pixels)
    names = [n.strip() for n in args.encoders.split(",") if n.strip()]
    extractors = [EXTRACTORS.get(name) for name in names]  # every name checked before any work
    shard = Shard.parse(args.shard) if args.shard else Shard.from_environment()
    if shard is not None:
        if args.force:
            raise XmodalError("--force re-encodes every image in one process; run it without --shard")
        for extractor in extractors:
            _print_shard(extractor.name, shard, extract_shard(dataset, extractor.name, options, shard))
        return
    for extractor in extractors:
        name = extractor.name
        result = extract(dataset, name, options, force=args.force)
        manifest = result.features.manifest
        encoded = manifest.get("encoded", 0)
        rate = ""
        if encoded and extractor.side == "image":
            rate = f"  {encoded / max(manifest['seconds'], 1e-9):.1f} images/s"
        state = "cached" if result.cached else "extracted"
        if "encoded" in manifest and not result.cached:  # item-keyed extractors encode only what the cache lacks
            rate += f"  encoded {encoded} of {manifest.get('rows', len(dataset))}"
        print(f"{name:<7} {state:<9} {result.seconds:8.2f} s  {result.features.size_bytes() / 2**20:8.1f} MiB"
              f"{rate}  {result.features.path}")
        if result.features.bad_items:
            print(f"        skipped {len(result.features.bad_items)} unreadable image(s): rows left at zero, "
                  "excluded from training and evaluation")
    if dataset.text_kind == "raw" and any(extractor.side == "text" for extractor in extractors):
        from xmodal.encoders.coverage import dataset_coverage

        print("\n".join(["text coverage:", *dataset_coverage(dataset, options.max_text_tokens)]))


def _print_shard(name: str, shard, outcome) -> None:
    if outcome.left_to_shard_0:
        print(f"{name:<7} shard {shard}: not an image extractor, left to shard 0")
        return
    rate = f" ({outcome.encoded / max(outcome.seconds, 1e-9):.1f} images/s)" if outcome.encoded else ""
    done = (f"view built: {outcome.view.features.path}" if outcome.view is not None else
            f"waiting for shard(s) {', '.join(map(str, outcome.waiting))}; the last to finish builds the view")
    print(f"{name:<7} shard {shard}: encoded {outcome.encoded} in {outcome.seconds:.2f} s{rate}; {done}")


def cmd_models(args: argparse.Namespace) -> None:
    from xmodal.config import list_configs
    from xmodal.features.kinds import describe
    from xmodal.models.registry import model_classes

    configs = list_configs()
    for name, cls in model_classes().items():
        needs = [f"{side}: " + " + ".join(" | ".join(describe(side, kind) for kind in part)
                                          for part in cls.input_parts(side)) for side in ("image", "text")]
        if cls.needs_labels:
            needs.append("labels")
        own = [config for config in configs if config.split("/")[0] == name]
        print(f"{name:<8} {cls.description}\n{'':<8} needs {'; '.join(needs)}\n{'':<8} configs {', '.join(own) or '-'}")
        if cls.variants:
            print(f"{'':<8} variants " + ", ".join(f"{name}-{variant} ({preset.label})"
                                                   for variant, preset in cls.variants.items()))


def cmd_train(args: argparse.Namespace) -> None:
    import math

    from xmodal.config import load_config
    from xmodal.factory import train_config

    overrides = [*([f"data.path={args.path}"] if args.path else []),
                 *([f"data.image_root={args.image_root}"] if args.image_root else []),
                 *(["data.skip_bad=true"] if args.skip_bad else []), *args.overrides]
    config = load_config(args.config, overrides)
    result = train_config(config, args.out, resume=args.resume)
    state = "stopped early" if result.stopped_early else "finished"
    if math.isnan(result.best_metric):
        measured = "no validation split, so nothing was measured (set data.val_fraction > 0 for one)"
    else:
        measured = f"best validation {result.metric} {result.best_metric:.4f} at epoch {result.best_epoch}"
    print(f"{state} after {result.epochs_run} epoch(s); {measured}; run in {result.out}")


def cmd_eval(args: argparse.Namespace) -> None:
    import json

    from xmodal.api import load_run
    from xmodal.eval.report import format_ranking, format_table

    if args.shortlist is not None and args.shortlist < 0:
        raise XmodalError(f"--shortlist {args.shortlist}: give K >= 0 (0 scores every pair)")
    trained = load_run(args.run, args.checkpoint, args.device, allow_changed=args.allow_changed)
    first_stage = None if args.first_stage is None else load_run(args.first_stage, "best", args.device)
    metrics = trained.evaluate(args.split, shortlist=args.shortlist, protocol=args.protocol, first_stage=first_stage)
    protocol = f"-{args.protocol}" if args.protocol else ""
    shortlisted = f"-first-{first_stage.config.model.name}" if first_stage is not None else ""
    trained.record_metrics(f"{args.split}-{args.checkpoint}{protocol}{shortlisted}", metrics)
    if args.json:
        print(json.dumps(metrics))
    else:
        if trained.data_warning:
            print(trained.data_warning)
        folds = metrics.get("protocol", {})
        named = f", protocol {folds['name']}" if folds else ""
        named += f" (mean of {folds['folds']} folds of {folds['fold_images']:,} images)" if "folds" in folds else ""
        print(f"{trained.config.model.name} on {trained.dataset.name} ({args.split} split, {args.checkpoint} "
              f"checkpoint, {format_ranking(metrics['ranking'])}{named})")
        if "warning" in folds:
            print(f"warning: {folds['warning']}")
        print(format_table(metrics))


def cmd_run_complete(args: argparse.Namespace) -> None:
    from xmodal.trained import complete_run

    print(f"wrote {complete_run(args.run, path=args.path)}")


def cmd_export(args: argparse.Namespace) -> None:
    from xmodal.trained import export_run

    out = export_run(args.run, args.out, args.checkpoint)
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB): xmodal index build {out} --collection FOLDER ...")


COMMANDS = {("data", "fetch"): cmd_data_fetch, ("data", "info"): cmd_data_info, ("extract", None): cmd_extract,
            ("models", None): cmd_models, ("train", None): cmd_train, ("eval", None): cmd_eval,
            ("demo", None): cmd_demo, ("run", "complete"): cmd_run_complete, ("export", None): cmd_export}


def _commands() -> dict:
    from xmodal.search.commands import COMMANDS as SEARCH_COMMANDS

    return COMMANDS | SEARCH_COMMANDS


def main(argv: Sequence[str] | None = None) -> int:
    from xmodal.logs import configure_logging

    for stream in (sys.stdout, sys.stderr):  # a file name or text the OS gave undecoded prints as \udcxx
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbosity)
    command = _commands()[(args.verb, getattr(args, f"{args.verb}_verb", None))]
    try:
        code = command(args)  # a command may return a status (1: it ran and found problems)
        sys.stdout.flush()
    except XmodalError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `xmodal index info IDX | head -1`: the reader left, nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return 141
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
