"""`resnet serve`: a real server process on 127.0.0.1, a real HTTP client (httpx), bounded in count and time."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx  # the test extra installs the serve extra's stack and httpx
import numpy as np
import pytest
import torch
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

import resnet

CLASSES = ["tee", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"]
KEY = "k" * 8 + "0123456789abcdef"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def save_checkpoint(path: Path, image_size: int) -> Path:
    torch.manual_seed(0)
    model = resnet.create_model("resnet20", num_classes=len(CLASSES))
    with torch.no_grad():  # non-trivial BatchNorm statistics, so folding is exercised
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    resnet.save_weights(model, path, metadata={"class_names": CLASSES, "mean": [0.5, 0.4, 0.3],
                                               "std": [0.25, 0.2, 0.3], "image_size": [image_size, image_size]})
    return path


def png_bytes(array: np.ndarray, fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, fmt)
    return out.getvalue()


class Server:
    """`python -m resnet serve ...` in a subprocess; waits for /readyz."""

    def __init__(self, checkpoint: Path, *flags: str, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "resnet", "serve", "--checkpoint", str(checkpoint), "--port", str(self.port), *flags],
            env=ENV, stdout=subprocess.DEVNULL, stderr=open(log, "wb"),
        )

    def wait_ready(self, headers: dict[str, str] | None = None, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"server exited: {self.log.read_text()}"
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"server not ready within {timeout} s: {self.log.read_text()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("serve")
    rng = np.random.default_rng(0)
    found = {"checkpoint": save_checkpoint(root / "r20.safetensors", 32), "key": root / "key"}
    found["key"].write_text(KEY + "\n")
    for i in range(4):  # sizes that need resizing, RGB and gray, PNG and JPEG: the full preprocessing path
        array = rng.integers(0, 256, (30 + 7 * i, 40 + 3 * i, 3), dtype=np.uint8)
        name = root / f"img{i}.{'jpg' if i % 2 else 'png'}"
        Image.fromarray(array if i != 2 else array[:, :, 0]).save(name)
        found[f"img{i}"] = name
    return found


@pytest.fixture(scope="module")
def expected(files: dict[str, Path]) -> dict[str, list[dict]]:
    """What `resnet predict` prints for each image (all classes, so probabilities compare fully)."""
    images = [str(files[f"img{i}"]) for i in range(4)]
    out = subprocess.run([sys.executable, "-m", "resnet", "predict", "--checkpoint", str(files["checkpoint"]), *images,
                          "--top-k", "10", "--json"], env=ENV, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return {Path(p["image"]).name: p["predictions"] for p in json.loads(out.stdout)}


@pytest.fixture(scope="module")
def server(files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory,
           request: pytest.FixtureRequest) -> Iterator[Server]:
    # --api-key-file on loopback: the key is enforced wherever a key is given, so the off-loopback
    # check is tested here without binding a public address.
    s = Server(files["checkpoint"], "--precision", "fp32", "--backend", "torch", "--no-compile", "--max-batch", "16",
               "--max-wait-ms", "20", "--max-queue", "64", "--max-images", "100", "--max-body-mb", "0.25",
               "--max-image-pixels", "1000000", "--read-timeout-s", "2", "--api-key-file", str(files["key"]),
               log=tmp_path_factory.mktemp("log") / "server.log")
    try:
        request.getfixturevalue("expected")  # `resnet predict` runs while the server starts
        s.wait_ready()
        yield s
    finally:
        s.stop()


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=30) as c:
        yield c


def assert_same(got: list[dict], want: list[dict], tol: float = 1e-5) -> None:
    assert [p["class"] for p in got] == [p["class"] for p in want]
    assert max(abs(g["probability"] - w["probability"]) for g, w in zip(got, want)) < tol


def test_answers_equal_resnet_predict(client: httpx.Client, files: dict[str, Path], expected: dict) -> None:
    for i in range(4):
        path = files[f"img{i}"]
        raw = client.post("/v1/predict?top_k=10", content=path.read_bytes())
        assert raw.status_code == 200, raw.text
        assert_same(raw.json()["predictions"], expected[path.name])
        form = client.post("/v1/predict?top_k=3", files={"image": (path.name, path.read_bytes())})
        assert_same(form.json()["predictions"], expected[path.name][:3])
    info = client.get("/v1/model").json()
    assert (info["classes"], info["input_size"], info["precision"]) == (CLASSES, [3, 32, 32], "fp32")
    assert len(info["sha256"]) == 64 and info["preprocessing"]["mean"] == [0.5, 0.4, 0.3]


def test_64_concurrent_requests_all_answered_and_batched(server: Server, files: dict[str, Path], expected: dict) -> None:
    images = [files[f"img{i % 4}"] for i in range(64)]

    async def fire() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(base_url=server.url, headers={"X-API-Key": KEY}, timeout=60, limits=limits) as c:
            return await asyncio.gather(*(c.post("/v1/predict?top_k=10", content=p.read_bytes()) for p in images))

    responses = asyncio.run(asyncio.wait_for(fire(), 120))
    assert [r.status_code for r in responses] == [200] * 64
    for path, response in zip(images, responses):
        assert_same(response.json()["predictions"], expected[path.name])
    families = {f.name: f for f in text_string_to_metric_families(httpx.get(server.url + "/metrics", headers={"X-API-Key": KEY}).text)}
    sizes = {s.name: s.value for s in families["resnet_serve_batch_size"].samples}
    assert sizes["resnet_serve_batch_size_sum"] >= 64
    assert sizes["resnet_serve_batch_size_sum"] / sizes["resnet_serve_batch_size_count"] > 1  # batches formed
    answered = {(s.labels["endpoint"], s.labels["status"]): s.value for s in families["resnet_serve_requests"].samples
                if s.name == "resnet_serve_requests_total"}
    assert answered[("/v1/predict", "200")] >= 64
    assert {"resnet_serve_queue_depth", "resnet_serve_request_latency_seconds", "resnet_serve_errors"} <= set(families)


def test_each_bad_input_gets_its_status_and_the_server_keeps_serving(client: httpx.Client, files: dict[str, Path],
                                                                     expected: dict) -> None:
    good = files["img0"].read_bytes()
    lab = io.BytesIO()
    Image.new("LAB", (8, 8)).save(lab, "TIFF")
    cases = {
        "not_an_image": (415, b"just some text, not an image"),
        "bad_image": (400, good[: len(good) // 2]),  # truncated
        "decompression_bomb": (400, png_bytes(np.zeros((1100, 1000), np.uint8))),  # 1.1 MP > --max-image-pixels 1 MP
        "unsupported_mode": (415, lab.getvalue()),
        "empty_body": (400, b""),
    }
    for kind, (status, body) in cases.items():
        r = client.post("/v1/predict", content=body, headers={"Content-Type": "application/octet-stream"})
        assert (r.status_code, r.json()["kind"]) == (status, kind), r.text
        assert r.json()["error"]
    too_big = os.urandom(300 * 1024)  # over --max-body-mb 0.25
    r = client.post("/v1/predict", content=too_big)
    assert (r.status_code, r.json()["kind"]) == (413, "body_too_large")
    r = client.post("/v1/predict", content=iter([too_big[:100_000]] * 3))  # chunked: no Content-Length, counted
    assert (r.status_code, r.json()["kind"]) == (413, "body_too_large")
    r = client.post("/v1/predict", json={"image": "x"})
    assert (r.status_code, r.json()["kind"]) == (415, "unsupported_media_type")
    assert client.post("/v1/predict?top_k=x", content=good).status_code == 400
    # One bad image in a batch fails only that item.
    batch = client.post("/v1/predict/batch?top_k=10", files=[
        ("a", ("img0.png", good)), ("b", ("bad.png", good[: len(good) // 2])), ("c", ("img1.jpg", files["img1"].read_bytes()))])
    assert batch.status_code == 200
    results = batch.json()["results"]
    assert_same(results[0]["predictions"], expected["img0.png"])
    assert (results[1]["status"], results[1]["kind"]) == (400, "bad_image")
    assert_same(results[2]["predictions"], expected["img1.jpg"])
    # Still serving, and the errors are counted by kind.
    assert_same(client.post("/v1/predict?top_k=10", content=good).json()["predictions"], expected["img0.png"])
    errors = {s.labels["kind"]: s.value for f in text_string_to_metric_families(client.get("/metrics").text)
              if f.name == "resnet_serve_errors" for s in f.samples if s.name == "resnet_serve_errors_total"}
    assert all(errors.get(kind, 0) >= 1 for kind in [*cases, "body_too_large", "unsupported_media_type"]), errors


def test_slow_clients_time_out(server: Server) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=15) as s:  # body never completes: 408
        s.sendall(f"POST /v1/predict HTTP/1.1\r\nHost: x\r\nX-API-Key: {KEY}\r\nContent-Length: 5000\r\n\r\n".encode() + b"x" * 10)
        start = time.monotonic()
        reply = s.recv(4096)
        assert reply.startswith(b"HTTP/1.1 408") and b"read_timeout" in reply
        assert time.monotonic() - start < 10
    with socket.create_connection(("127.0.0.1", server.port), timeout=15) as s:  # headers never complete: dropped
        s.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\n")
        assert s.recv(4096) == b""


def test_queue_full_answers_503_with_retry_after(client: httpx.Client, files: dict[str, Path]) -> None:
    good = files["img0"].read_bytes()
    r = client.post("/v1/predict/batch", files=[(f"f{i}", (f"{i}.png", good)) for i in range(65)])  # --max-queue 64
    assert (r.status_code, r.json()["kind"]) == (503, "queue_full")
    assert int(r.headers["Retry-After"]) >= 1
    assert client.post("/v1/predict", content=good).status_code == 200


def test_api_key_enforced(server: Server) -> None:
    good = b"not checked before the key"
    assert httpx.post(server.url + "/v1/predict", content=good).status_code == 401
    assert httpx.get(server.url + "/metrics", headers={"Authorization": "Bearer " + "x" * len(KEY)}).status_code == 401
    assert httpx.get(server.url + "/v1/model", headers={"X-API-Key": KEY}).status_code == 200
    assert httpx.get(server.url + "/healthz").status_code == 200  # probes stay open


def test_open_inference_protocol_v2(client: httpx.Client, files: dict[str, Path], expected: dict) -> None:
    from resnet.data import preprocess_images

    meta = client.get("/v2/models/resnet20").json()
    assert meta["inputs"][0]["shape"] == [-1, 3, 32, 32] and meta["outputs"][0]["shape"] == [-1, 10]
    assert client.get("/v2/models/resnet20/ready").json()["ready"] is True
    paths = [files["img0"], files["img3"]]
    x = preprocess_images(paths, in_chans=3, image_size=32, mean=[0.5, 0.4, 0.3], std=[0.25, 0.2, 0.3])
    body = {"id": "r1", "inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32",
                                    "data": x.flatten().tolist()}]}
    r = client.post("/v2/models/resnet20/infer", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["id"] == "r1" and out["outputs"][0]["shape"] == [2, 10]
    probs = np.array(out["outputs"][0]["data"]).reshape(2, 10)
    for row, path in zip(probs, paths):
        want = {p["index"]: p["probability"] for p in expected[path.name]}
        assert np.abs(row - np.array([want[i] for i in range(10)])).max() < 1e-5
    body["inputs"][0]["shape"] = [2, 3, 28, 28]
    assert client.post("/v2/models/resnet20/infer", json=body).status_code == 400
    assert client.post("/v2/models/other/infer", json=body).status_code == 404


def test_public_host_requires_an_api_key(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    from resnet.cli.main import main

    # Refused before anything is loaded or bound (in-process: the same CLI path, without a second torch import).
    assert main(["serve", "--checkpoint", str(files["checkpoint"]), "--host", "0.0.0.0", "--port", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("resnet: error: --host 0.0.0.0") and "--api-key-file" in err[0]
    assert main(["serve", "--checkpoint", str(files["checkpoint"]), "--host", "0.0.0.0",
                 "--api-key-file", str(files["checkpoint"].with_name("missing"))]) == 2
    assert "--api-key-file" in capsys.readouterr().err


@pytest.mark.slow
def test_overload_503_and_sigterm_loses_no_accepted_request(tmp_path: Path) -> None:
    # A 320-pixel input makes resnet20 slow enough (eager, one thread) that requests pile up.
    checkpoint = save_checkpoint(tmp_path / "slow.safetensors", 320)
    image = png_bytes(np.random.default_rng(1).integers(0, 256, (320, 320, 3), dtype=np.uint8))
    server = Server(checkpoint, "--no-fast", "--max-batch", "2", "--max-wait-ms", "0", "--max-queue", "4",
                    log=tmp_path / "server.log")
    try:
        server.wait_ready()
        reference = httpx.post(server.url + "/v1/predict?top_k=10", content=image, timeout=60).json()["predictions"]

        async def fire(n: int, then_stop: bool) -> list[httpx.Response | Exception]:
            async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=httpx.Limits(max_connections=n + 1)) as c:
                tasks = [asyncio.ensure_future(c.post("/v1/predict?top_k=10", content=image)) for _ in range(n)]
                if then_stop:  # every request received (in progress, not yet answered), then SIGTERM
                    for _ in range(500):
                        families = text_string_to_metric_families((await c.get("/metrics")).text)
                        busy = next(s.value for f in families if f.name == "resnet_serve_requests_in_progress"
                                    for s in f.samples)
                        if busy >= n + 1:  # + the /metrics request itself
                            break
                        await asyncio.sleep(0.02)
                    assert busy >= n + 1, f"only {busy - 1} of {n} requests in flight"
                    server.proc.send_signal(signal.SIGTERM)
                return await asyncio.gather(*tasks, return_exceptions=True)

        overload = asyncio.run(asyncio.wait_for(fire(24, False), 120))
        statuses = [r.status_code for r in overload]
        assert set(statuses) <= {200, 503} and statuses.count(503) >= 1 and statuses.count(200) >= 1, statuses
        assert all(int(r.headers["Retry-After"]) >= 1 for r in overload if r.status_code == 503)
        for r in overload:
            if r.status_code == 200:
                assert_same(r.json()["predictions"], reference)

        accepted = asyncio.run(asyncio.wait_for(fire(4, True), 120))  # 4 = --max-queue: all accepted
        assert [getattr(r, "status_code", r) for r in accepted] == [200] * 4
        for r in accepted:
            assert_same(r.json()["predictions"], reference)
        assert server.proc.wait(timeout=60) == 0, server.log.read_text()
        with pytest.raises(httpx.ConnectError):
            httpx.get(server.url + "/healthz", timeout=5)
    finally:
        server.stop()


def test_pretrained_weights_served_as_predict_prepares_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--pretrained NAME: the published weights' resize-and-centre-crop, the same answer as `predict --pretrained`."""
    from resnet.models import pretrained
    from resnet.models import registry
    from resnet.models.hub import file_sha256
    from resnet.serve.engine import EngineOptions, load_served_model, warm_up
    from resnet.train.inference import CheckpointSource, predict_files

    monkeypatch.setenv("RESNET_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)
    raw = tmp_path / "raw.pth"
    torch.save(resnet.create_model("resnet20", num_classes=3).state_dict(), raw)
    digest = file_sha256(raw)
    served = raw.rename(tmp_path / f"resnet20_tiny-{digest[:8]}.pth")  # a file:// "download": no network
    cfg = pretrained.PretrainedCfg(arch="resnet20", tag="tiny", url=served.as_uri(), sha256=digest[:8],
                                   class_names=("cat", "dog", "fish"), input_size=(3, 24, 24), mean=(0.5, 0.4, 0.3),
                                   std=(0.2, 0.25, 0.3), interpolation="bicubic", crop_fraction=24 / 30, resize_size=30,
                                   source="test", license="mit", top1=12.5)
    monkeypatch.setitem(registry._PRETRAINED, "resnet20", {"tiny": cfg})
    image = tmp_path / "a.png"
    image.write_bytes(png_bytes(np.random.default_rng(0).integers(0, 256, (40, 52, 3), dtype=np.uint8)))
    want = predict_files(CheckpointSource(pretrained="resnet20.tiny"), [image], top_k=3)[0].top
    model = load_served_model(None, pretrained="resnet20.tiny")
    warm_up(model, EngineOptions(fast=False, max_batch=2))
    probs = model.score(model.preprocess(image.read_bytes(), 10**7)[None])[0]
    assert model.describe()["preprocessing"]["centre_crop"] == [24, 24]
    assert [(name, index) for name, index, _ in want] == [(model.class_names[i], i) for i in probs.argsort(descending=True).tolist()]
    assert max(abs(p - float(probs[i])) for _, i, p in want) < 1e-6
