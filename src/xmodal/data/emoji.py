"""The built-in emoji dataset: Google's Noto emoji images with their names and keywords.

Sources are two npm packages, ``emoji-datasource-google@16.0.0`` (64 px PNGs, names, short
names, category, subcategory) and ``emojilib@4.0.3`` (keywords). They come from ``npm pack``
or from a folder that already holds the two tarballs; the files needed are unpacked once into
``$XMODAL_HOME/data/emoji/<versions>``.

Records: base emojis only (skin-tone variants live inside each entry and are not listed), the
"Component" category dropped; labels are the 9 categories, with subcategories as a second label
space; two texts per emoji: the name, and the short names plus keywords. Images are RGBA and are
composited on white when loaded. The split is stratified by category (70/10/20), deterministic.

Other languages (``lang``, a CLDR locale such as ``zh``, ``ja``, ``ru``): the texts come from the
Unicode CLDR annotations (npm ``cldr-annotations-full@48.2.0``, one JSON file per locale, keyed
by the emoji character, joined as emojilib's keys are): the locale's short name (``tts``) and
its keywords (``default``). Same images, categories and split as English (the split is drawn over
the English records, so an emoji keeps its split in every language); an emoji the locale does
not name is left out and counted in the dataset's notes. The dataset is then ``emoji-<lang>``.
CLDR keeps the names it derives from parts (flags, families, hair styles, "facing right") in a
separate package, ``cldr-annotations-derived-full``, not read here: in ``zh``, ``ja`` and ``ru``
1,580 of the 1,906 emoji have a name (262 of the 270 flags have none).
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
from xmodal.paths import atomic_directory, atomic_write_bytes, xmodal_home

DATASOURCE = ("emoji-datasource-google", "16.0.0")
EMOJILIB = ("emojilib", "4.0.3")
CLDR = ("cldr-annotations-full", "48.2.0")
ENGLISH = "en"  # emojilib's keywords, as before CLDR was read
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
    tarballs = Path(source) if source is not None else _npm_pack(target.parent / "tarballs", (DATASOURCE, EMOJILIB))
    with atomic_directory(target) as staging:
        _unpack(tarballs, staging)
    return target


def is_unpacked(folder: Path) -> bool:
    return (folder / "emoji.json").is_file() and (folder / "emoji-en-US.json").is_file() and (folder / "img").is_dir()


def _npm_pack(folder: Path, packages: tuple[tuple[str, str], ...]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    wanted = [tarball_name(p) for p in packages]
    if all((folder / name).is_file() for name in wanted):
        return folder
    if shutil.which("npm") is None:
        raise XmodalError("npm is not installed: install Node.js's npm, or pass --path to a folder holding "
                          + " and ".join(wanted))
    specs = [f"{name}@{version}" for name, version in packages]
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


def fetch_annotations(lang: str, source: Path | None = None) -> Path:
    """One CLDR locale's annotations as a JSON file in the cache, taken from the CLDR tarball in
    ``source`` (the folder of the npm tarballs) or fetched with ``npm pack``."""
    target = cache_root() / f"cldr-{CLDR[1]}" / f"{lang}.json"
    if target.is_file():
        return target
    folder = Path(source) if source is not None and (Path(source) / tarball_name(CLDR)).is_file() else None
    tarball = (folder or _npm_pack(cache_root().parent / "tarballs", (CLDR,))) / tarball_name(CLDR)
    member = f"package/annotations/{lang}/annotations.json"
    try:
        with tarfile.open(tarball) as archive:
            names = archive.getnames()
            if member not in names:
                locales = sorted(name.split("/")[2] for name in names if name.endswith("/annotations.json"))
                raise XmodalError(f"data.lang={lang!r}: CLDR {CLDR[1]} has no annotations for this locale; "
                                  f"choose one of its {len(locales)}: {', '.join(locales)}")
            stream = archive.extractfile(member)
            data = stream.read() if stream is not None else b""
    except (tarfile.TarError, EOFError, OSError) as error:
        raise DataError(tarball, f"corrupt or incomplete tarball ({error})", "delete it and fetch again") from None
    atomic_write_bytes(target, data)
    return target


def read_emoji(path: Path | None = None, *, skip_bad: bool = False, lang: str = ENGLISH) -> Dataset:
    """Build the records; ``path`` as for :func:`fetch_emoji`; ``lang`` a CLDR locale (English: emojilib)."""
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
    name, notes = "emoji", []
    if lang != ENGLISH:
        where = fetch_annotations(lang, path)
        records, notes = _in_language(records, _load_json(where), lang, where)
        name = f"emoji-{lang}"
    items = [
        Item(id=r["id"], image=r["image"], texts=r["texts"], labels=(categories.index(r["category"]),),
             split=split[r["id"]], extra_labels={"subcategory": (subcategories.index(r["subcategory"]),)})
        for r in records
    ]
    return Dataset(name, items, label_names=categories, extra_label_names={"subcategory": subcategories},
                   source=str(root), skipped=report.messages(), notes=notes)


def _in_language(records: list[dict], annotations: dict, lang: str, where: Path) -> tuple[list[dict], list[str]]:
    """The records with the locale's texts (its short name; its keywords), those it does not name left out."""
    try:
        names = annotations["annotations"]["annotations"]
    except (KeyError, TypeError):
        raise DataError(where, "no annotations.annotations object", "delete the file and fetch again") from None
    kept, missing = [], []
    for record in records:
        entry = next((names[c] for c in record["characters"] if c in names and names[c].get("tts")), None)
        if entry is None:
            missing.append(record["id"])
            continue
        short = normalise_caption(entry["tts"][0])
        keywords = (normalise_caption(word) for word in entry.get("default", []))
        described = ", ".join(word for word in dict.fromkeys(keywords) if word and word != short)
        kept.append(record | {"texts": (short, described or short)})
    notes = [f"texts in CLDR {CLDR[1]} locale {lang!r}: {len(kept)} of {len(records)} emoji named there; "
             f"{len(missing)} without a name in this locale left out"
             + (f" (e.g. {', '.join(missing[:5])})" if missing else "")]
    return kept, notes


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
    return {"id": entry["unified"].lower(), "image": image, "texts": texts, "characters": _characters(entry),
            "category": entry["category"], "subcategory": entry["subcategory"]}


def _characters(entry: dict) -> list[str]:
    """The emoji as text: fully qualified, its ``non_qualified`` form, and with no variation selector
    (U+FE0F) at all, the form CLDR keys its sequences by; emojilib and CLDR are joined on the first
    that matches."""
    codes = [code for code in (entry["unified"], entry.get("non_qualified")) if code]
    forms = ["".join(chr(int(h, 16)) for h in code.split("-")) for code in codes]
    return list(dict.fromkeys([*forms, forms[0].replace("\ufe0f", "")]))


def _keywords(entry: dict, keywords: dict[str, list[str]]) -> list[str]:
    return next((list(keywords[c]) for c in _characters(entry) if c in keywords), [])


register_dataset(DatasetSpec("emoji", "built in: Noto emoji images with names and keywords, 9 categories, texts in "
                             "English or any CLDR locale (--lang zh; fetched with npm, or --path to a folder "
                             "holding the npm tarballs)", read_emoji, needs_path=False, options=("lang",),
                             detect=lambda path: path.is_dir() and any(path.glob("emojilib-*.tgz"))))
