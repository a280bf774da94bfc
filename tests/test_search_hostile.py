"""An index and a server you can trust, tried as a hostile user and client would (issue 27's cases):
concurrent writers, a server that sees updates, files checked on open, damaged versions, NaN
weights, folders with links out and bad files, malformed requests, paths kept private, a killed
build, a broken pipe, Milvus versions that survive a kill and a copy."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from test_feature_store import TESTS, colour, home  # noqa: F401  (the fixture: a private home, fake encoders)
from test_search_index import trained  # noqa: F401  (the fixture: trained dual and JGCAR runs)
from xmodal.cli import main
from xmodal.errors import XmodalError
from xmodal.search.engine import SearchEngine
from xmodal.search.index import SearchIndex
from xmodal.search.service import Limits, create_app, server_config
from xmodal.search.versions import read_live


def images(folder: Path, start: int, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + n):
        Image.new("RGB", (32, 32), colour(i)).save(folder / f"new{i}.png")
    return folder


def build(run: Path, index: Path, *extra: str) -> None:
    assert main(["index", "build", str(run), "--collection", "split:test", "--out", str(index), *extra]) == 0


def counts(index: Path) -> dict[str, int]:
    opened = SearchIndex.open(index)
    try:
        return {name: len(side) for name, side in opened.sides.items()}
    finally:
        opened.close()  # a Milvus Lite file serves one process: let the next command's process open it


def test_concurrent_writers_lose_nothing(trained, tmp_path):  # noqa: F811
    """Three processes add three folders and one removes an item, all at once: every change lands."""
    index = tmp_path / "index"
    build(trained["dual"], index)
    folders = [images(tmp_path / f"batch{b}", 100 + 10 * b, 6) for b in range(3)]
    env = {**os.environ, "XMODAL_HOME": os.environ["XMODAL_HOME"], "PYTHONPATH": str(TESTS)}
    script = textwrap.dedent("""
        import sys
        from test_feature_store import FakeEffnet, FakeMiniLM
        import xmodal.encoders.image, xmodal.encoders.minilm
        xmodal.encoders.image.EfficientNetLite0 = FakeEffnet
        xmodal.encoders.minilm.MiniLM = FakeMiniLM
        from xmodal.cli import main
        sys.exit(main(sys.argv[1:]))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, "index", "add", str(index), str(folder)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for folder in folders]
    procs.append(subprocess.Popen([sys.executable, "-c", script, "index", "remove", str(index), "sq4"], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()[-2000:]
    ids = {entry.id for entry in SearchIndex.open(index).sides["images"].entries}
    assert len(ids) == 8 - 1 + 18 and "sq4" not in ids  # nobody's items lost, the removed one not back


def test_a_reader_never_sees_a_version_pruned_under_it(tmp_path):
    (tmp_path / "CURRENT").write_text("v000001\n")
    calls = []

    def read(version: Path) -> str:
        calls.append(version.name)
        if len(calls) == 1:  # a writer switched CURRENT and pruned v000001 while we were opening it
            (tmp_path / "CURRENT").write_text("v000002\n")
            raise FileNotFoundError(version / "items.jsonl")
        return version.name

    assert read_live(tmp_path, read) == "v000002" and calls == ["v000001", "v000002"]


def test_the_server_swaps_to_each_new_version_and_says_which(trained, tmp_path):  # noqa: F811
    index = tmp_path / "index"
    build(trained["dual"], index)
    engine = SearchEngine.open(index)
    app = create_app(engine, Limits(refresh_s=0))  # the watcher is driven by hand here
    client = TestClient(app)
    assert client.get("/health").json()["items"] == {"images": 8, "texts": 16}
    before = client.get("/health").json()["version"]
    assert main(["index", "remove", str(index), "sq4"]) == 0
    assert main(["index", "add", str(index), str(images(tmp_path / "more", 100, 2))]) == 0
    assert app.state.watcher.check() is True
    health = client.get("/health").json()
    assert health["items"] == {"images": 9, "texts": 16} and health["version"] != before
    assert client.get("/items/sq4").status_code == 404 and client.get("/items/new100").status_code == 200
    hits = client.post("/search", json={"text": "colour number 4", "k": 10}).json()
    assert "sq4" not in [hit["id"] for hit in hits["hits"]] and hits["version"] == health["version"]
    assert app.state.watcher.check() is False  # nothing new


@pytest.mark.parametrize("damage", ["keys reordered", "items cut", "rep deleted", "rep cut", "vectors deleted",
                                    "vectors cut", "pickle keys", "CURRENT binary", "manifest edited", "wrong width"])
def test_a_damaged_index_is_refused_in_one_line(trained, tmp_path, capsys, damage):  # noqa: F811
    index = tmp_path / "index"
    build(trained["dual"], index)
    version = index / (index / "CURRENT").read_text().strip()
    keys = version / "images" / "vectors" / "keys.npy"
    if damage == "keys reordered":
        np.save(keys, np.load(keys)[::-1])
    elif damage == "items cut":
        path = version / "images" / "items.jsonl"
        path.write_bytes(path.read_bytes()[:-40])
    elif damage == "rep deleted":
        (version / "images" / "rep.safetensors").unlink()
    elif damage in ("rep cut", "vectors cut"):
        path = version / "images" / ("rep.safetensors" if damage == "rep cut" else "vectors/vectors.npy")
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "vectors deleted":
        (version / "images" / "vectors" / "vectors.npy").unlink()
    elif damage == "pickle keys":
        np.save(keys, np.array([object()] * 8, dtype=object), allow_pickle=True)
    elif damage == "CURRENT binary":
        (index / "CURRENT").write_bytes(b"\xff\xfe\x00")
    elif damage == "manifest edited":
        manifest = json.loads((version / "manifest.json").read_text())
        manifest["sides"]["images"]["dim"] = 3
        (version / "manifest.json").write_text(json.dumps(manifest))
    else:  # vectors of another width, with the file table updated to match (a hand-made index)
        vectors = version / "images" / "vectors" / "vectors.npy"
        np.save(vectors, np.zeros((8, 3), np.float32))
        manifest = json.loads((version / "manifest.json").read_text())
        from xmodal.search.versions import file_table

        manifest["files"] = file_table(version)
        (version / "manifest.json").write_text(json.dumps(manifest))
    capsys.readouterr()
    assert main(["search", str(index), "--text", "colour"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert "rebuild" in err
    with pytest.raises(XmodalError):
        SearchEngine.open(index)  # serve refuses to start on it, rather than answering 500s


def test_nan_weights_are_refused_at_indexing_and_evaluation(trained, tmp_path, capsys):  # noqa: F811
    run = tmp_path / "nan-run"
    shutil.copytree(trained["dual"], run)
    best = run / "checkpoints" / "best.pt"
    state = torch.load(best, weights_only=True)
    state["model"] = {key: torch.full_like(value, float("nan")) if value.is_floating_point() else value
                      for key, value in state["model"].items()}
    torch.save(state, best)
    capsys.readouterr()
    assert main(["index", "build", str(run), "--collection", "split:test", "--out", str(tmp_path / "i")]) == 2
    assert "not finite (NaN or infinite)" in capsys.readouterr().err
    assert not (tmp_path / "i" / "CURRENT").exists()
    assert main(["eval", str(run)]) == 2
    err = capsys.readouterr().err
    assert "not finite" in err and "Traceback" not in err


def test_folders_stay_inside_their_root_and_skip_bad_files_when_asked(trained, tmp_path, capsys):  # noqa: F811
    photos = images(tmp_path / "photos", 100, 3)
    images(tmp_path / "outside", 200, 2)
    (photos / "up").symlink_to(tmp_path / "outside")  # a link out of the folder
    (photos / "empty.png").write_bytes(b"")
    (photos / "text.png").write_text("not an image")
    (photos / "new100.txt").write_bytes(b"caption \xff\xfe not utf-8")
    index = tmp_path / "index"
    args = ["index", "build", str(trained["dual"]), "--collection", str(photos), "--out", str(index)]
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "--skip-bad" in err and "Traceback" not in err
    assert main([*args, "--skip-bad"]) == 0
    out = capsys.readouterr().out
    assert "left out 4:" in out and "up: a symlink that leads outside the folder" in out
    ids = {entry.id for entry in SearchIndex.open(index).sides["images"].entries}
    assert ids == {"new100", "new101", "new102"}  # nothing from outside, no bad file
    # Another image saved under an indexed name is not silently skipped as "indexed already".
    Image.new("RGB", (32, 32), (1, 2, 3)).save(photos / "new101.png")
    assert main(["index", "add", str(index), str(photos / "new101.png")]) == 2
    assert "indexed already with other content" in capsys.readouterr().err


def test_malformed_requests_are_4xx_and_errors_name_no_server_path(trained, tmp_path):  # noqa: F811
    index = tmp_path / "index"
    build(trained["dual"], index)
    client = TestClient(create_app(SearchEngine.open(index)))
    nested = "[" * 2500 + "]" * 2500
    cases = [(client.post("/search", json={"text": "a cat", "min_score": [1]}), 422),
             (client.post("/search", json={"text": "a cat", "min_score": {"a": 1}}), 422),
             (client.post("/search", json={"text": "a cat", "k": 3, "oops": 1}), 422),
             (client.post("/search", content=nested, headers={"content-type": "application/json"}), 400),
             (client.post("/search", content='{"text": "a\\ud800b"}', headers={"content-type": "application/json"}),
              422),
             (client.post("/search", content=b"x" * 100_000_000, headers={"content-type": "application/json"}), 413),
             (client.get("/items/nope"), 404)]
    for response, status in cases:
        assert response.status_code == status, (response.request.url, response.text[:200])
        assert str(tmp_path) not in response.text and "/tmp" not in response.text, response.text
    Path(SearchIndex.open(index).sides["images"].entries[0].source).unlink()  # an indexed file gone
    missing = client.get(f"/thumbnails/{SearchIndex.open(index).sides['images'].entries[0].id}")
    assert missing.status_code == 404 and "/tmp" not in missing.text
    assert client.post("/search", json={"text": "red", "k": 3}).status_code == 200  # still serving
    busy = TestClient(create_app(SearchEngine.open(index), Limits(max_uploads=0)))  # every upload over the cap
    png = (tmp_path / "up.png")
    Image.new("RGB", (32, 32), colour(3)).save(png)
    refused = busy.post("/search", files={"image": ("up.png", png.read_bytes(), "image/png")})
    assert refused.status_code == 503 and "uploads are in progress" in refused.json()["detail"]
    not_image = client.post("/search", files={"image": ("x.png", b"%PDF-1.4 not an image", "image/png")})
    assert not_image.status_code == 415 and "the uploaded file" in not_image.json()["detail"]
    assert "xmodal-upload" not in not_image.text and "tmp" not in not_image.text
    relative = client.get("/items/..%2F..%2Fetc%2Fpasswd")  # named as sent, not cut like a server path
    assert relative.status_code == 404 and "'../../etc/passwd'" in relative.json()["detail"]


def test_slow_clients_are_cut_off_and_the_server_keeps_answering(trained, tmp_path):  # noqa: F811
    """Case 12: 300 half-open connections used to stay open for good. Here 40 clients open a
    connection and never finish their request head (some send nothing, some drip a byte at a time)."""
    import uvicorn

    index = tmp_path / "index"
    build(trained["dual"], index)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    limits = Limits(header_timeout_s=1.0, max_connections=100)
    server = uvicorn.Server(server_config(SearchEngine.open(index), port=port, limits=limits))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    try:
        slow = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(40)]
        for i, connection in enumerate(slow):
            if i % 2:
                connection.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # the head never ends
        health = urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5)
        assert health.status == 200  # answered while they hang
        dripping = slow[1]
        started = time.time()
        closed = False
        while time.time() - started < 5 and not closed:
            try:
                dripping.sendall(b"X")  # a byte every 0.2 s does not keep it open
                time.sleep(0.2)
            except OSError:
                closed = True
        assert closed or dripping.recv(100) == b"", "a dripping client was never cut off"
        assert all(connection.recv(100) == b"" for connection in slow[2:])  # every one closed by the server
        for connection in slow:
            connection.close()
        assert urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5).status == 200
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_a_file_name_that_is_not_utf8_is_indexed_and_printed(trained, tmp_path, capsys):  # noqa: F811
    """Case 10: a Latin-1 file name (the OS hands Python a lone surrogate) used to end in a traceback."""
    photos = images(tmp_path / "photos", 100, 2)
    name = os.fsdecode(b"caf\xe9.png")
    Image.new("RGB", (32, 32), colour(7)).save(photos / name)
    index = tmp_path / "index"
    assert main(["index", "build", str(trained["dual"]), "--collection", str(photos), "--out", str(index)]) == 0
    reopened = SearchIndex.open(index)
    assert name[:-4] in {entry.id for entry in reopened.sides["images"].entries}  # the same name after a reload
    capsys.readouterr()
    assert main(["search", str(index), "--text", "colour number 7", "-k", "3"]) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and "caf" in captured.out


def test_a_killed_build_is_replaced_and_a_broken_pipe_ends_quietly(trained, tmp_path):  # noqa: F811
    index = tmp_path / "index"
    (index / "v000001" / "images").mkdir(parents=True)  # what a build killed before CURRENT leaves
    (index / "LOCK").touch()
    build(trained["dual"], index)  # no --overwrite needed: nothing in it was ever live
    assert counts(index)["images"] == 8
    command = f"{sys.executable} -m xmodal index info {index} | head -c 10"
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(TESTS.parent / "src")})
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr


def test_a_query_the_terminal_could_not_decode_is_one_line(trained, tmp_path, capsys):  # noqa: F811
    index = tmp_path / "index"
    build(trained["dual"], index)
    capsys.readouterr()
    assert main(["search", str(index), "--text", "caf\udce9"]) == 2  # argv's surrogateescape of latin-1 bytes
    err = capsys.readouterr().err
    assert "not valid UTF-8" in err and err.count("\n") == 1


@pytest.mark.slow
def test_milvus_versions_survive_a_kill_and_a_copy(trained, tmp_path):  # noqa: F811
    index = tmp_path / "index"
    build(trained["dual"], index, "--backend", "milvus")
    assert counts(index) == {"images": 8, "texts": 16}
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(TESTS)!r})
        from test_feature_store import FakeEffnet, FakeMiniLM
        import xmodal.encoders.image, xmodal.encoders.minilm
        xmodal.encoders.image.EfficientNetLite0 = FakeEffnet
        xmodal.encoders.minilm.MiniLM = FakeMiniLM
        import xmodal.search.index as index_module
        real = index_module.SearchIndex.save
        def dying(self):  # the vectors are in Milvus, the version not yet live
            for side in self.sides.values():
                if side.vectors is not None:
                    side.vectors.client.flush(side.vectors.options["collection"])
            os.kill(os.getpid(), signal.SIGKILL)
        index_module.SearchIndex.save = dying
        from xmodal.cli import main
        main(["index", "add", {str(index)!r}, {str(images(tmp_path / "more", 100, 5))!r}])
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(TESTS.parent / "src")})
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    assert counts(index) == {"images": 8, "texts": 16}  # the killed add's rows are not seen
    engine = SearchEngine.open(index)
    assert len(engine.search_text("colour number 4", k=20)) == 8
    engine.index.close()
    assert main(["index", "add", str(index), str(tmp_path / "more")]) == 0  # rolls the killed one back first
    assert counts(index) == {"images": 13, "texts": 16}
    copy = tmp_path / "copy"
    shutil.copytree(index, copy)
    assert main(["index", "remove", str(copy), "sq4", "new100"]) == 0
    assert counts(copy)["images"] == 11 and counts(index)["images"] == 13  # the copy has its own vectors
