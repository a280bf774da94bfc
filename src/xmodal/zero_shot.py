"""Runs of models that need no training data (``conse``), so a folder of photos can be searched at once.

``xmodal index build --model conse --collection ~/photos --out INDEX`` asks :func:`zero_shot_run`
for the model's run folder: made once per model and image resolution under
``$XMODAL_HOME/zero-shot/`` (written whole or not at all), then loaded like any trained run, so
``xmodal search`` and ``xmodal serve`` work on the index unchanged. The run holds what any run
holds: ``config.yaml``, ``checkpoints/best.pt`` (the model's fixed weights) and ``inputs/`` (how a
new image or text is encoded: EfficientNet-Lite0's pooled features, MiniLM's sentence vector).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch

from xmodal.config import dump_config, validate_config
from xmodal.errors import XmodalError
from xmodal.features.inputs import make_spec
from xmodal.features.pipeline import FOLDER as PIPELINE_FOLDER
from xmodal.features.pipeline import InputPipeline, PipelineSettings
from xmodal.models.registry import create_model, model_classes
from xmodal.paths import atomic_directory, xmodal_home
from xmodal.training.checkpoint import save_checkpoint

logger = logging.getLogger(__name__)

DEFAULT_MAX_TEXT_TOKENS = 64


def zero_shot_models() -> list[str]:
    """Registered models that read EfficientNet-Lite0 and MiniLM vectors and learn nothing from pairs."""
    return [name for name, cls in model_classes().items() if getattr(cls, "zero_shot", False)]


def zero_shot_run(model: str, resolution: int = 224) -> Path:
    """The run folder of zero-shot ``model`` at ``resolution``, made on first use."""
    if model not in zero_shot_models():
        raise XmodalError(f"--model {model}: only a model that needs no training can index without a run "
                          f"({', '.join(zero_shot_models()) or 'none registered'}); for the others, train a run "
                          "(xmodal train) and pass its folder")
    folder = xmodal_home() / "zero-shot" / f"{model}-{resolution}px"
    if (folder / "checkpoints" / "best.pt").is_file():
        return folder
    config = validate_config({"model": {"name": model},
                              "data": {"dataset": "folder", "image_input": "global", "text_input": "global",
                                       "resolution": resolution}}, f"the zero-shot {model} run")
    cls = model_classes()[model]
    spec = make_spec({"global": {"dim": cls.example_dims["image_dim"]}},
                     {"global": {"dim": cls.example_dims["text_dim"]}})
    network = create_model(model, spec, config.model.params)
    pipeline = InputPipeline(spec, PipelineSettings(f"{model} (zero-shot, no training data)", resolution,
                                                    DEFAULT_MAX_TEXT_TOKENS), {})
    state = {"model": {key: value.detach().cpu() for key, value in network.state_dict().items()}, "optimizers": {},
             "epoch": 0, "best_metric": math.nan, "best_epoch": 0, "bad_epochs": 0, "rng": torch.get_rng_state(),
             "cuda_rng": [], "config": config.model_dump(mode="json"), "inputs": {"image": ["global"],
                                                                                  "text": ["global"]},
             "metric": "rsum"}
    with atomic_directory(folder) as staging:
        (staging / "config.yaml").write_text(dump_config(config), encoding="utf-8")
        save_checkpoint(staging / "checkpoints" / "best.pt", state)
        pipeline.save(staging / PIPELINE_FOLDER)
    logger.info("made the zero-shot %s run in %s", model, folder)
    return folder
