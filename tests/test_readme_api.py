"""The README's Python API example, run as a user would: its code block as a script."""

import os
import re
import subprocess
import sys

import pytest

import xmodal
from conftest import EMOJI_TARBALLS, REPO


def readme_example() -> str:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- api-example -->\s*```python\n(.*?)```", readme, re.S)
    assert match, "README.md lost its API example (the ```python block after <!-- api-example -->)"
    return match.group(1)


def test_public_api_is_importable_and_light():
    code = "import sys, xmodal; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"  # `import xmodal` alone loads no torch
    assert {"acln", "cca", "dual"} <= set(xmodal.list_models()) and "emoji" in xmodal.list_datasets()
    assert "gpldan/emoji-search" in xmodal.list_configs()
    for name in xmodal.__all__:
        assert getattr(xmodal, name).__doc__ or name == "__version__", f"xmodal.{name} has no docstring"


@pytest.mark.slow
def test_readme_api_example_runs(tmp_path, xmodal_home):
    if not (EMOJI_TARBALLS / "emojilib-4.0.3.tgz").is_file():
        pytest.skip("../shared/data/emoji is absent")
    script = tmp_path / "example.py"
    script.write_text(readme_example())
    env = dict(os.environ, XMODAL_HOME=str(xmodal_home), XMODAL_DATA_EMOJI=str(EMOJI_TARBALLS))
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=1200)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0] == str(xmodal.list_models())
    assert re.fullmatch(r"TrainedRun\(dual on emoji, runs/api-example\) test rsum \d+\.\d", lines[1])
    assert float(lines[1].rsplit(" ", 1)[1]) > 150  # chance rsum on 382 images x 764 texts is about 6
    assert [line.split(" -> ")[0] for line in lines[2:]] == ["'a carved pumpkin for halloween'",
                                                             "'a white horse with a horn'"]
    assert all(len(line.split(" -> ")[1].split(", ")) == 3 for line in lines[2:])
    assert re.search(r"^epoch 30/30  loss: total", done.stderr, re.M)
    assert (tmp_path / "runs" / "api-example" / "checkpoints" / "best.pt").is_file()
