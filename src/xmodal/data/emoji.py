"""The built-in emoji dataset: Google's Noto emoji images with their names and keywords.

Sources are two npm packages, ``emoji-datasource-google@16.0.0`` (64 px PNGs, names, short
names, category, subcategory) and ``emojilib@4.0.3`` (keywords). They come from ``npm pack``
or from a folder that already holds the two tarballs; the files needed are unpacked once into
``$XMODAL_HOME/data/emoji/<versions>``.

Records: base emojis only (skin-tone variants live inside each entry and are not listed), the
"Component" category dropped; labels are the 9 categories, with subcategories as a second label
space; two texts per emoji: the name, and the short names plus keywords. Images are RGBA and are
composited on white when loaded. The split is stratified by category (70/10/20), deterministic.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from pathlib import Path

from xmodal.data.records import Dataset, Item
from xmodal.data.registry import DatasetSpec, register_dataset
from xmodal.data.splits import stratified_split
from xmodal.data.texts import normalise_caption
from xmodal.errors import DataError, SkipReport, XmodalError
from xmodal.paths import atomic_directory, xmodal_home

DATASOURCE = ("emoji-datasource-google", "16.0.0")
EMOJILIB = ("emojilib", "4.0.3")
IMAGE_DIR = "package/img/google/64/"
DROPPED_CATEGORIES = {"Component"}


def tarball_name(package: tuple[str, str]) -> str:
    return f"{package[0]}-{package[1]}.tgz"


def cache_root() -> Path:
    return xmodal_home() / "data" / "emoji" / f"google-{DATASOURCE[1]}_emojilib-{EMOJILIB[1]}"


def fetch_emoji(source: Path | None = None) -> Path:
    """Make the unpacked dataset available and return its folder.

    ``source`` may be an unpacked folder (returned as is), or a folder holding the two tarballs.
    Without it, the tarballs are fetched with ``npm pack`` into the cache.
    """
    if source is not None and not Path(source).is_dir():
        raise XmodalError(f"--path {source}: no such folder; give the folder that holds the two emoji tarballs "
                          "(or an unpacked copy), or leave --path out to fetch them with npm")
    if source is not None and is_unpacked(Path(source)):
        return Path(source)
    target = cache_root()
    if is_unpacked(target):
        return target
    tarballs = Path(source) if source is not None else _npm_pack(target.parent / "tarballs")
    with atomic_directory(target) as staging:
        _unpack(tarballs, staging)
    return target


def is_unpacked(folder: Path) -> bool:
    return (folder / "emoji.json").is_file() and (folder / "emoji-en-US.json").is_file() and (folder / "img").is_dir()


def _npm_pack(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    wanted = [tarball_name(p) for p in (DATASOURCE, EMOJILIB)]
    if all((folder / name).is_file() for name in wanted):
        return folder
    if shutil.which("npm") is None:
        raise XmodalError("npm is not installed: install Node.js's npm, or pass --path to a folder holding "
                          + " and ".join(wanted))
    specs = [f"{name}@{version}" for name, version in (DATASOURCE, EMOJILIB)]
    result = subprocess.run(["npm", "pack", *specs], cwd=folder, capture_output=True, text=True)
    if result.returncode != 0:
        raise XmodalError(f"`npm pack {' '.join(specs)}` failed:\n{result.stderr.strip()}\n"
                          "Check the network, or pass --path to a folder holding the two tarballs.")
    return folder


def _unpack(tarballs: Path, staging: Path) -> None:
    """Copy out emoji.json, the keyword file and the 64 px images (not the 70 MB of sprites)."""
    datasource, emojilib = (tarballs / tarball_name(p) for p in (DATASOURCE, EMOJILIB))
    for tarball in (datasource, emojilib):
        if not tarball.is_file():
            raise DataError(tarball, "tarball not found",
                            f"run `npm pack {DATASOURCE[0]}@{DATASOURCE[1]} {EMOJILIB[0]}@{EMOJILIB[1]}` there")
    (staging / "img").mkdir()
    try:
        with tarfile.open(datasource) as archive:
            for member in archive:
                if member.name == "package/emoji.json":
                    _copy_member(archive, member, staging / "emoji.json")
                elif member.isfile() and member.name.startswith(IMAGE_DIR) and member.name.endswith(".png"):
                    _copy_member(archive, member, staging / "img" / Path(member.name).name)
        with tarfile.open(emojilib) as archive:
            _copy_member(archive, archive.getmember("package/dist/emoji-en-US.json"), staging / "emoji-en-US.json")
    except (tarfile.TarError, KeyError, EOFError, OSError) as error:
        raise DataError(tarballs, f"corrupt or incomplete tarball ({error})", "delete it and fetch again") from None


def _copy_member(archive: tarfile.TarFile, member: tarfile.TarInfo, destination: Path) -> None:
    stream = archive.extractfile(member)
    if stream is None:
        raise KeyError(member.name)
    destination.write_bytes(stream.read())


def read_emoji(path: Path | None = None, *, skip_bad: bool = False) -> Dataset:
    """Build the records; ``path`` as for :func:`fetch_emoji`."""
    root = fetch_emoji(path)
    report = SkipReport(skip_bad)
    entries = _load_json(root / "emoji.json")
    keywords = _load_json(root / "emoji-en-US.json")
    entries = [e for e in entries if e.get("category") not in DROPPED_CATEGORIES]
    categories = sorted({e["category"] for e in entries})
    subcategories = sorted({e["subcategory"] for e in entries})
    records = []
    for index, entry in enumerate(entries):
        try:
            records.append(_record(root, entry, keywords, index))
        except DataError as error:
            report.handle(error)
    split = stratified_split([r["id"] for r in records], [r["category"] for r in records])
    items = [
        Item(id=r["id"], image=r["image"], texts=r["texts"], labels=(categories.index(r["category"]),),
             split=split[r["id"]], extra_labels={"subcategory": (subcategories.index(r["subcategory"]),)})
        for r in records
    ]
    return Dataset("emoji", items, label_names=categories, extra_label_names={"subcategory": subcategories},
                   source=str(root), skipped=report.messages())


def _load_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(path, f"unreadable JSON ({error})", "delete the emoji cache folder and fetch again") from None


def _record(root: Path, entry: dict, keywords: dict[str, list[str]], index: int) -> dict:
    where = root / "emoji.json"
    for field in ("unified", "name", "image", "category", "subcategory"):
        if not entry.get(field):
            raise DataError(where, f"entry {index} has no {field!r}", "use the pinned package version")
    image = root / "img" / entry["image"]
    if not image.is_file():
        raise DataError(image, f"image for {entry['name']} not found", "delete the emoji cache and fetch again")
    name = normalise_caption(entry["name"].lower())
    words = _keywords(entry, keywords)
    phrases = (normalise_caption(w.replace("_", " ")) for w in [*entry.get("short_names", []), *words])
    described = ", ".join(p for p in dict.fromkeys(phrases) if p and p != name)
    texts = (name, described or name)
    return {"id": entry["unified"].lower(), "image": image, "texts": texts,
            "category": entry["category"], "subcategory": entry["subcategory"]}


def _keywords(entry: dict, keywords: dict[str, list[str]]) -> list[str]:
    for code in (entry["unified"], entry.get("non_qualified")):
        if code:
            character = "".join(chr(int(h, 16)) for h in code.split("-"))
            if character in keywords:
                return list(keywords[character])
    return []


register_dataset(DatasetSpec("emoji", "built in: Noto emoji images with names and keywords, 9 categories (fetched "
                             "with npm, or --path to a folder holding the two npm tarballs)", read_emoji,
                             needs_path=False, detect=lambda path: path.is_dir() and any(path.glob("emojilib-*.tgz"))))
