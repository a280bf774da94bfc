"""Bad input gets one clear line (exit 2, no traceback), or a counted and named skip when asked."""

import io
import re

import pytest
import torch
import yaml
from PIL import Image

from engine_helpers import write_caption_csv, write_dual_config, write_feature_dataset
from xmodal.cli import main
from xmodal.config import load_config
from xmodal.factory import train_config
from xmodal.features.extract import ExtractOptions
from xmodal.features.inputs import ModelData
from xmodal.training.checkpoint import load_checkpoint


def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


@pytest.fixture
def trained(tmp_path):
    data = write_feature_dataset(tmp_path / "features")
    run = tmp_path / "run"
    train_config(load_config(write_dual_config(tmp_path / "c.yaml", data, epochs=1)), run)
    return run


def test_empty_and_foreign_checkpoints(trained, capsys):
    (trained / "checkpoints" / "best.pt").write_bytes(b"")
    assert main(["eval", str(trained)]) == 2
    assert "best.pt: empty file (0 bytes), not a checkpoint" in _error(capsys)
    assert main(["eval", str(trained), "--checkpoint", "last"]) == 0  # the other one still works
    capsys.readouterr()
    buffer = io.BytesIO()
    torch.save({"model": {}, "config": {}, "epoch": 1, "payload": io.BytesIO}, buffer)  # not plain values
    (trained / "checkpoints" / "last.pt").write_bytes(buffer.getvalue())
    assert main(["eval", str(trained), "--checkpoint", "last"]) == 2
    err = _error(capsys)
    assert "holds objects other than tensors and plain values" in err and "weights_only" not in err


def test_checkpoint_keeps_the_cuda_random_state_slot(trained):
    state = load_checkpoint(trained / "checkpoints" / "last.pt")
    assert "cuda_rng" in state and "rng" in state


@pytest.mark.parametrize("args, message", [
    (["--resolution", "100"], "--resolution=100: the image size must be a positive multiple of 32"),
    (["--resolution", "-32"], "--resolution=-32: the image size must be a positive multiple of 32"),
    (["--batch-size", "0"], "--batch-size 0: give at least 1"),
])
def test_extract_options_are_checked(tmp_path, capsys, args, message):
    assert main(["extract", "folder", "--path", str(tmp_path), *args]) == 2
    assert message in _error(capsys)


def test_config_resolution_and_device_errors(trained, tmp_path, capsys):
    config = write_dual_config(tmp_path / "c2.yaml", tmp_path / "features")
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "r"), "--set", "data.resolution=100"]) == 2
    assert "--set data.resolution: Value error, the image size must be a positive multiple of 32" in _error(capsys)
    if not torch.cuda.is_available():
        assert main(["train", "--config", str(config), "--out", str(tmp_path / "r"),
                     "--set", "train.device=cuda"]) == 2
        err = _error(capsys)
        assert "no CUDA GPU is available here" in err and "--set train.device=auto" in err


def test_model_data_does_not_change_the_callers_options(tmp_path):
    data = write_feature_dataset(tmp_path / "features")
    from xmodal.data.precomputed import read_feature_arrays

    options = ExtractOptions(image_resolution=448)
    ModelData(read_feature_arrays(data), "global", "global", resolution=224, extract_options=options)
    assert options.image_resolution == 448


def _collection(folder, n: int = 12, shade: int = 128):
    """A CSV collection of small real PNGs, one of them truncated (``shade`` makes the pixels differ
    from another test's collection, which the content-keyed feature cache would otherwise share)."""
    folder.mkdir()
    rows = []
    for i in range(n):
        Image.new("RGB", (40, 40), (20 * i, 255 - 20 * i, shade)).save(folder / f"im{i}.png")
        split = "train" if i < 8 else ("val" if i < 10 else "test")
        rows += [{"image": f"im{i}.png", "caption": f"a colour patch number {i}", "split": split}]
    (folder / "im3.png").write_bytes((folder / "im3.png").read_bytes()[:50])
    return write_caption_csv(folder / "c.csv", rows)


@pytest.mark.slow
def test_train_skip_bad_works_like_every_other_verb(tmp_path, capsys):
    table = _collection(tmp_path / "photos")
    config = tmp_path / "dual.yaml"
    config.write_text(yaml.safe_dump({"model": {"name": "dual", "params": {"dim": 8, "hidden": 0}},
                                      "data": {"dataset": "csv", "image_input": "global", "text_input": "global"},
                                      "train": {"epochs": 1, "batch_size": 4}}))
    base = ["train", "--config", str(config), "--path", str(table)]
    assert main([*base, "--out", str(tmp_path / "a")]) == 2
    assert "im3.png: unreadable or truncated image" in _error(capsys)
    # A cache written by `extract --skip-bad` must not make the same data pass silently.
    assert main(["extract", "csv", "--path", str(table), "--encoders", "effnet", "--skip-bad"]) == 0
    capsys.readouterr()
    assert main([*base, "--out", str(tmp_path / "b")]) == 2
    err = _error(capsys)
    assert "1 image(s) could not be read (first: " in err and "pass --skip-bad" in err
    assert main([*base, "--out", str(tmp_path / "c"), "--skip-bad"]) == 0
    err = capsys.readouterr().err
    assert "skipped 0 bad record(s) while reading and 1 unreadable image(s): " in err
    skipped = (tmp_path / "c" / "skipped.txt").read_text().splitlines()
    assert skipped[1] == "# 1 unreadable image(s), by item id:" and len(skipped) == 3


def test_images_over_the_pixel_limit_are_refused_with_the_option_named(tmp_path):
    from xmodal.data.images import load_rgb
    from xmodal.errors import DataError

    path = tmp_path / "wide.png"
    Image.new("RGBA", (200, 100), (255, 0, 0, 100)).save(path)  # 20,000 pixels
    for limit, shown in ((15_000, "0.015"), (5_000, "0.005")):  # xmodal's check; Pillow's bomb error (> 2x)
        with pytest.raises(DataError, match=rf"wide.png: 0.02-megapixel image, over the limit of {shown} megapixels "
                                            r"\(raise the limit with --max-image-pixels"):
            load_rgb(path, 32, max_pixels=limit)
    from PIL import Image as PilImage

    saved = PilImage.MAX_IMAGE_PIXELS
    assert load_rgb(path, 32, max_pixels=0).size == (32, 32)  # 0: no limit
    assert PilImage.MAX_IMAGE_PIXELS == saved  # Pillow's global is restored


@pytest.mark.parametrize("mode, suffix", [("RGB", "jpg"), ("RGBA", "png"), ("P", "png"), ("L", "png")])
def test_large_images_are_reduced_while_loading_and_match_a_full_decode(tmp_path, mode, suffix):
    """Draft / reduce-on-load keeps >= 2x the target size, so the result is close to a full decode."""
    import numpy as np

    from xmodal.data.images import load_rgb, to_rgb

    rng = np.random.default_rng(0)
    pixels = np.kron(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8), np.ones((150, 150, 1), dtype=np.uint8))
    picture = Image.fromarray(pixels)  # 2400 x 1800, smooth 150-px blocks
    picture = picture.convert(mode) if mode != "RGBA" else picture.convert("RGBA")
    path = tmp_path / f"big.{suffix}"
    picture.save(path, quality=95) if suffix == "jpg" else picture.save(path)
    reduced = np.asarray(load_rgb(path, 224), dtype=np.float32)
    with Image.open(path) as full:
        full.load()
        reference = np.asarray(to_rgb(full).resize((224, 224), Image.Resampling.BICUBIC), dtype=np.float32)
    assert reduced.shape == (224, 224, 3)
    assert np.abs(reduced - reference).mean() < 3.0  # of 255


def test_eval_on_changed_data_refuses_or_uses_the_recorded_items(trained, tmp_path, capsys):
    import json

    import numpy as np

    before = json.loads(_eval_json(trained, capsys))
    record = json.loads((trained / "data.json").read_text())
    assert len(record["splits"]["test"]) == 40 and record["fingerprint"]
    data = tmp_path / "features"
    for kind in ("images", "texts", "labels"):  # 10 test rows appended after training
        rows = np.load(data / f"test_{kind}.npy")
        np.save(data / f"test_{kind}.npy", np.concatenate([rows, rows[:10]]))
    assert main(["eval", str(trained), "--json"]) == 2
    err = _error(capsys)
    assert "changed since" in err and "test +10/-0 items" in err and "--allow-changed" in err
    assert main(["eval", str(trained), "--json", "--allow-changed"]) == 0
    after = json.loads(capsys.readouterr().out)
    assert "evaluating on the items the run recorded" in after.pop("warning")
    assert after == before  # the same 40 test items, the same metrics
    import xmodal
    from xmodal.errors import DataChangedError

    run = xmodal.load_run(trained)  # reads no data: what needs only the run works whatever happened to it
    assert run.dataset_name == "precomputed" and run.model.training is False
    with pytest.raises(DataChangedError, match="changed since") as added:
        run.evaluate()  # evaluation reads it, and refuses
    assert not added.value.same_items
    recorded = xmodal.load_run(trained, allow_changed=True).evaluate()
    assert "evaluating on the items the run recorded" in recorded.pop("warning") and recorded == before
    for kind in ("images", "texts", "labels"):  # back to the 40 test items, one of them altered
        np.save(data / f"test_{kind}.npy", np.load(data / f"test_{kind}.npy")[:40])
    images = np.load(data / "test_images.npy")
    images[0] += 1.0
    np.save(data / "test_images.npy", images)
    with pytest.raises(DataChangedError, match=r"test \+0/-0 items") as altered:
        xmodal.load_run(trained).evaluate()
    assert altered.value.same_items  # what changed is inside an item


def _eval_json(run, capsys) -> str:
    capsys.readouterr()
    assert main(["eval", str(run), "--json"]) == 0
    return capsys.readouterr().out


def test_data_info_check_decodes_every_image_and_lists_the_bad_ones(tmp_path, capsys):
    table = _collection(tmp_path / "photos")
    assert main(["data", "info", "csv", "--path", str(table)]) == 0  # reading alone does not open images
    capsys.readouterr()
    assert main(["data", "info", "csv", "--path", str(table), "--check"]) == 1
    printed = capsys.readouterr().out
    assert "checked 12 image(s) in " in printed and ": 1 bad (extraction needs --skip-bad, or fix them)" in printed
    assert re.search(r"^  .*: .*im3.png: unreadable or truncated image", printed, re.M)
    (tmp_path / "photos" / "im3.png").unlink()
    Image.new("RGB", (8, 8)).save(tmp_path / "photos" / "im3.png")
    assert main(["data", "info", "csv", "--path", str(table), "--check"]) == 0
    assert ": 0 bad" in capsys.readouterr().out


def test_the_pixel_limit_is_an_option_of_extract_check_and_config(tmp_path, capsys):
    table = _collection(tmp_path / "photos", shade=7)
    (tmp_path / "photos" / "im3.png").unlink()
    Image.new("RGB", (40, 40)).save(tmp_path / "photos" / "im3.png")
    assert main(["data", "info", "csv", "--path", str(table), "--check", "--max-image-pixels", "1000"]) == 1
    printed = capsys.readouterr().out
    assert printed.count("0.0016-megapixel image, over the limit of 0.001 megapixels") == 12
    assert main(["extract", "csv", "--path", str(table), "--encoders", "effnet", "--max-image-pixels", "1000"]) == 2
    assert "raise the limit with --max-image-pixels" in _error(capsys)
    assert main(["extract", "csv", "--path", str(table), "--encoders", "effnet", "--max-image-pixels", "1000",
                 "--skip-bad"]) == 0
    assert "skipped 12 unreadable image(s)" in capsys.readouterr().out
    assert load_config("dual/emoji", ["data.max_image_pixels=0"]).data.max_image_pixels == 0


def test_a_list_file_that_is_not_utf8_does_not_suggest_skip_bad(tmp_path, capsys):
    table = tmp_path / "c.csv"
    table.write_bytes("image,caption\na.png,caf\xe9 au lait\n".encode("latin-1"))
    assert main(["data", "info", "csv", "--path", str(table), "--skip-bad"]) == 2
    err = _error(capsys)
    assert f"{table}:2: not valid UTF-8 (byte 23: 0xe9)" in err and "iconv" in err and "--skip-bad" not in err


def test_folder_reader_follows_links_inside_once_leaves_links_out_and_names_an_all_bad_folder(tmp_path, capsys):
    from xmodal.data.collection import read_folder

    collection = tmp_path / "collection"
    real = collection / ".store" / "cats"  # a hidden store the visible folders link into
    real.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(real / "a.png")
    (real / "a.txt").write_text("a cat\n")
    (collection / "cats").symlink_to(real, target_is_directory=True)
    (real / "loop").symlink_to(collection, target_is_directory=True)  # a link back up the tree
    dataset = read_folder(collection)
    assert [item.id for item in dataset] == ["cats/a"] and dataset.label_names == ["cats"]

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    Image.new("RGB", (8, 8)).save(outside / "b.png")
    (outside / "b.txt").write_text("a dog\n")
    (collection / "dogs").symlink_to(outside, target_is_directory=True)  # leads out of the collection
    assert [item.id for item in read_folder(collection)] == ["cats/a"]
    (collection / "cats").unlink()
    assert main(["data", "info", "folder", "--path", str(collection)]) == 2
    err = _error(capsys)
    assert "no images inside the folder (1 symlink(s) lead outside it and are left out, first: dogs)" in err

    (collection / "cats").symlink_to(real, target_is_directory=True)
    (real / "a.txt").unlink()
    assert main(["data", "info", "folder", "--path", str(collection), "--skip-bad"]) == 2
    err = _error(capsys)
    assert "no usable items; 1 bad record(s) skipped, first: " in err and "no caption file a.txt" in err
    assert "check the folder's images and captions" in err and "file's contents" not in err


def test_skipped_records_are_named_on_screen_and_in_the_run(tmp_path, capsys):
    table = _collection(tmp_path / "photos", shade=60)
    rows = table.read_text().splitlines()
    table.write_text("\n".join([*rows, "missing.png,a patch that is not there,train", "im1.png,,train"]) + "\n")
    assert main(["data", "info", "csv", "--path", str(table), "--skip-bad"]) == 0
    printed = capsys.readouterr().out
    assert "skipped 2 bad record(s) (--skip-bad):" in printed and "c.csv:14: image not found: " in printed
    config = tmp_path / "dual.yaml"
    config.write_text(yaml.safe_dump({"model": {"name": "dual", "params": {"dim": 8, "hidden": 0}},
                                      "data": {"dataset": "csv"}, "train": {"epochs": 1, "batch_size": 4}}))
    assert main(["train", "--config", str(config), "--path", str(table), "--out", str(tmp_path / "run"),
                 "--skip-bad"]) == 0
    listed = (tmp_path / "run" / "skipped.txt").read_text()
    assert "# 2 bad record(s) skipped while reading csv:" in listed and "c.csv:14: image not found: " in listed
    assert "# 1 unreadable image(s), by item id:\nim3" in listed


def test_emoji_path_that_does_not_exist_is_an_error_even_when_cached(tmp_path, capsys):
    assert main(["data", "fetch", "emoji", "--path", str(tmp_path / "nope")]) == 2
    assert "nope: no such folder" in _error(capsys)
