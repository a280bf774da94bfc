"""A run's input pipeline: how new images and texts become model inputs, without the training data.

What a model reads is fixed at training time: the input kinds of each side, the encoders' settings
(image resolution, MiniLM's window), and per kind what was fitted on the training texts (the
vocabulary behind ``words``, the word graph behind ``bow``, the TF-IDF vocabularies and idf). An
:class:`InputPipeline` holds all of it with the model's :class:`~xmodal.models.base.InputSpec`
(sizes, GloVe rows, the graph's Laplacian), so a trained run can encode a query or a new
collection anywhere. Training writes it into the run folder (``RUN/inputs/``) in safe formats
only: JSON, safetensors and ``.npy`` (nothing pickled). :meth:`InputPipeline.from_data` builds it
from a dataset's features; :meth:`InputPipeline.load` from a run folder.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from torch import Tensor

from xmodal.errors import XmodalError
from xmodal.features.extractors import ExtractOptions
from xmodal.features.kinds import get_kind
from xmodal.models.base import InputSpec, Rep
from xmodal.paths import atomic_write_bytes

FORMAT = 1
FOLDER = "inputs"  # inside a run folder
T = TypeVar("T")


@dataclass(frozen=True)
class PipelineSettings:
    """What decides how a new item is encoded, besides the kinds' own state."""

    dataset: str  # the dataset the run was trained on (for messages and indexes)
    resolution: int
    max_text_tokens: int
    image_refusal: str | None = None  # why new images cannot be encoded (a features-only dataset), if so
    text_refusal: str | None = None
    label_names: tuple[str, ...] = ()


class InputPipeline:
    """Encodes new images and texts exactly as the run's training data was encoded."""

    def __init__(self, spec: InputSpec, settings: PipelineSettings, states: dict[str, Any],
                 device: torch.device | str = "cpu"):
        self.spec = spec
        self.settings = settings
        self.states = states  # "text.words" -> the Vocabulary, "text.bow" -> the vertex words, ...
        self.options = ExtractOptions(image_resolution=settings.resolution, max_text_tokens=settings.max_text_tokens,
                                      device=torch.device(device))
        self._encoders: dict[str, object] = {}

    # -- what the input kinds' encode_new functions ask of a pipeline -------------------------
    def encoder(self, name: str, build: Callable[[], T]) -> T:
        """A frozen encoder (EfficientNet-Lite0, MiniLM), built on first use and kept."""
        if name not in self._encoders:
            self._encoders[name] = build()
        return self._encoders[name]  # type: ignore[return-value]

    def state(self, key: str) -> Any:
        if key not in self.states:
            raise XmodalError(f"this run's input pipeline has no state for {key!r}; run `xmodal run complete RUN` "
                              "with its data to write it")
        return self.states[key]

    def refusal(self, side: str) -> str | None:
        return self.settings.image_refusal if side == "image" else self.settings.text_refusal

    # -- encoding ------------------------------------------------------------------------------
    def encode_images(self, images: Sequence[str | Path | Image.Image]) -> Rep:
        """Model inputs of image files or PIL images, as the training images were encoded."""
        return self._encode("image", self.spec.image_parts, images)

    def encode_texts(self, texts: Sequence[str]) -> Rep:
        """Model inputs of sentences, with the run's frozen encoders and fitted vocabularies."""
        return self._encode("text", self.spec.text_parts, [texts] if isinstance(texts, str) else texts)

    def _encode(self, side: str, parts: tuple[str, ...], values: Sequence) -> Rep:
        merged: Rep = {}
        for name in parts:
            kind = get_kind(side, name)
            if kind.encode_new is None:
                raise XmodalError(f"{side} input {name!r} cannot encode new {side}s outside the dataset")
            merged |= kind.encode_new(self, values)
        return merged

    # -- building and keeping ------------------------------------------------------------------
    @classmethod
    def from_data(cls, data: Any) -> "InputPipeline":
        """The pipeline of a :class:`~xmodal.features.inputs.ModelData` (its dataset's features)."""
        dataset = data.dataset
        states = {}
        for side, parts in (("image", data.spec.image_parts), ("text", data.spec.text_parts)):
            for name in parts:
                kind = get_kind(side, name)
                if kind.state is not None and data.can_encode_new(side):
                    states[f"{side}.{name}"] = kind.state(data)
        settings = PipelineSettings(dataset.name, data.options.image_resolution, data.options.max_text_tokens,
                                    data.refusal("image"), data.refusal("text"), tuple(dataset.label_names))
        return cls(data.spec, settings, states, data.options.device)

    def save(self, folder: Path) -> None:
        """Write the pipeline into ``folder`` (a run's ``inputs/``): JSON, safetensors, the kinds' files."""
        folder.mkdir(parents=True, exist_ok=True)
        tensors: dict[str, Tensor] = {}
        spec = {field.name: _encode_value(getattr(self.spec, field.name), field.name, tensors)
                for field in fields(InputSpec)}
        for key, value in self.states.items():
            side, name = key.split(".")
            kind_folder = folder / key
            kind_folder.mkdir(exist_ok=True)
            save_state = get_kind(side, name).save_state
            assert save_state is not None, f"input kind {key} keeps a state it cannot save"
            save_state(value, kind_folder)
        save_file({key: value.contiguous() for key, value in tensors.items()}, folder / "spec.safetensors")
        record = {"format": FORMAT, "settings": asdict(self.settings), "spec": spec, "states": sorted(self.states)}
        atomic_write_bytes(folder / "pipeline.json", json.dumps(record, indent=1, ensure_ascii=False).encode())

    @classmethod
    def load(cls, folder: Path, device: torch.device | str = "cpu") -> "InputPipeline":
        """The pipeline a run folder's ``inputs/`` holds; a clear error when it is damaged."""
        path = folder / "pipeline.json"
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            tensors = load_file(folder / "spec.safetensors")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, Exception) as error:
            raise XmodalError(f"{path}: cannot read the run's input pipeline ({str(error).splitlines()[0]}); "
                              "write it again with `xmodal run complete RUN` (needs the training data)") from None
        if record.get("format") != FORMAT:
            raise XmodalError(f"{path}: input pipeline format {record.get('format')!r}, this xmodal reads {FORMAT}")
        spec = InputSpec(**{key: _decode_value(value, tensors) for key, value in record["spec"].items()})
        states = {}
        for key in record["states"]:
            side, name = key.split(".")
            load_state = get_kind(side, name).load_state
            assert load_state is not None
            states[key] = load_state(folder / key)
        settings = record["settings"] | {"label_names": tuple(record["settings"].get("label_names", ()))}
        return cls(spec, PipelineSettings(**settings), states, device)

    def to(self, device: torch.device | str) -> "InputPipeline":
        return InputPipeline(self.spec, self.settings, self.states, device)

    def describe(self) -> dict[str, Any]:
        """The kinds and settings, for manifests and messages."""
        return {"image": list(self.spec.image_parts), "text": list(self.spec.text_parts),
                "resolution": self.settings.resolution, "max_text_tokens": self.settings.max_text_tokens,
                "dataset": self.settings.dataset}


def pipeline_exists(run_dir: Path) -> bool:
    return (run_dir / FOLDER / "pipeline.json").is_file()


# -- the spec's values as JSON plus tensors --------------------------------------------------------

def _encode_value(value: Any, path: str, tensors: dict[str, Tensor]) -> Any:
    """JSON for plain values; tensors (dense, or sparse COO such as the graph's Laplacian) by reference."""
    if isinstance(value, Tensor):
        if value.is_sparse:
            value = value.coalesce()
            tensors[f"{path}.indices"], tensors[f"{path}.values"] = value.indices(), value.values()
            return {"$sparse": path, "shape": list(value.shape)}
        for key, stored in tensors.items():  # the same tensor under two names (spec.word_vectors and its part's)
            if stored.data_ptr() == value.data_ptr() and stored.shape == value.shape:
                return {"$tensor": key}
        tensors[path] = value.detach().cpu().contiguous()
        return {"$tensor": path}
    if isinstance(value, dict):
        return {key: _encode_value(item, f"{path}.{key}", tensors) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode_value(item, f"{path}.{index}", tensors) for index, item in enumerate(value)]
    return value


def _decode_value(value: Any, tensors: dict[str, Tensor]) -> Any:
    if isinstance(value, dict):
        if "$tensor" in value:
            return tensors[value["$tensor"]]
        if "$sparse" in value:
            key = value["$sparse"]
            return torch.sparse_coo_tensor(tensors[f"{key}.indices"], tensors[f"{key}.values"], value["shape"],
                                           check_invariants=True).coalesce()  # a damaged file fails here
        return {key: _decode_value(item, tensors) for key, item in value.items()}
    if isinstance(value, list):
        return tuple(_decode_value(item, tensors) for item in value)
    return value
