"""The `objects` input kind: ten fixed-box proxies for detector proposals, or a dataset's own object arrays."""


import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from engine_helpers import write_caption_csv, write_feature_dataset
from xmodal.config import load_config
from xmodal.encoders.objects import BOXES, CROP_RESOLUTION, crops
from xmodal.errors import XmodalError
from xmodal.factory import build_data
from xmodal.features.extract import ExtractOptions, extract
from xmodal.features.inputs import ModelData


def test_boxes_cover_the_image_at_three_scales():
    assert len(BOXES) == 10 and BOXES[0] == (0.0, 0.0, 1.0, 1.0)
    image = Image.new("RGB", (100, 100), (0, 0, 0))
    image.paste((255, 0, 0), (50, 0, 100, 50))  # red top-right quarter
    pieces = crops(image, 32)
    assert all(piece.size == (32, 32) for piece in pieces)
    red = [float(np.asarray(piece)[..., 0].mean()) / 255 for piece in pieces]
    # whole: 1/4 red; top-right quadrant (60% of each side): (0.5/0.6)^2; bottom-left quadrant: the
    # 10 x 10 overlap of the quadrants, 100 / 3600; top half: 1/2
    assert red[0] == pytest.approx(0.25, abs=0.02) and red[2] == pytest.approx((0.5 / 0.6) ** 2, abs=0.03)
    assert red[3] == pytest.approx(100 / 3600, abs=0.01) and red[6] == pytest.approx(0.5, abs=0.02)
    assert red[9] == pytest.approx(0.5, abs=0.02) and red[8] == pytest.approx(0.0, abs=0.01)


def _photos(folder, n=6):
    folder.mkdir()
    rows = []
    rng = np.random.default_rng(1)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(folder / f"p{i}.png")
        rows.append({"image": f"p{i}.png", "caption": f"photo {i}", "split": ["train", "val", "test"][i % 3]})
    return write_caption_csv(folder / "c.csv", rows)


@pytest.mark.slow
def test_object_extraction_matches_the_proxies_and_is_cached(tmp_path):
    from xmodal.data.collection import read_csv
    from xmodal.data.images import load_rgb
    from xmodal.encoders.objects import ObjectProxies

    dataset = read_csv(_photos(tmp_path / "photos"))
    first = extract(dataset, "objects", ExtractOptions())
    objects = first.features.array("objects")
    assert objects.shape == (6, 10, 1280) and objects.dtype == np.float16 and not first.cached
    expected = ObjectProxies().encode([load_rgb(dataset.items[4].image, 2 * CROP_RESOLUTION)])[0]
    np.testing.assert_allclose(objects[4].astype(np.float32), expected.numpy(), atol=2e-2, rtol=1e-2)
    assert extract(dataset, "objects", ExtractOptions()).cached
    data = ModelData(dataset, ["regions", "objects"], "global")
    batch = data.split("train").images()
    assert set(batch) == {"regions", "objects"} and batch["objects"].shape == (2, 10, 1280)
    assert data.spec.image_parts == ("regions", "objects") and data.spec.part("image", "objects") == {
        "dim": 1280, "count": 10}
    new = data.encode_new_images([dataset.items[4].image])
    torch.testing.assert_close(new["objects"][0], torch.from_numpy(objects[4].astype(np.float32)), atol=2e-2,
                               rtol=1e-2)


def test_object_arrays_a_dataset_ships_are_read_as_they_are(tmp_path):
    from xmodal.data.precomputed import read_feature_arrays

    folder = write_feature_dataset(tmp_path / "flat")
    flat = read_feature_arrays(folder)
    with pytest.raises(XmodalError, match="cannot provide them"):
        ModelData(flat, "objects", "global")
    for split in ("train", "val", "test"):  # [n, P=3, d=20] object features
        images = np.load(folder / f"{split}_images.npy")
        np.save(folder / f"{split}_images.npy", np.stack([images, images * 0.5, images * 2], axis=1))
    data = ModelData(read_feature_arrays(folder), "objects", "global")
    assert data.spec.part("image", "objects") == {"dim": 20, "count": 3}
    assert data.split("test").images(np.arange(2))["objects"].shape == (2, 3, 20)


def test_a_model_asking_for_objects_a_dataset_cannot_feed_gets_one_line(tmp_path):
    folder = write_feature_dataset(tmp_path / "flat")
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"model": {"name": "dual"}, "data": {"dataset": "precomputed",
                                                                           "path": str(folder),
                                                                           "image_input": "objects"}}))
    with pytest.raises(XmodalError, match="data.image_input='objects': model 'dual' takes global or regions"):
        build_data(load_config(config), torch.device("cpu"))
