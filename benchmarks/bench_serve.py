"""Load test of `resnet serve` against a naive server, on loopback, bounded in requests and time.

    .venv/bin/python benchmarks/bench_serve.py [--models resnet20,resnet50] [--clients 1,8,32]
        [--requests 20:256,50:96] [--out benchmarks/serve.md]

For each model (random weights, saved as a checkpoint with class names, mean/std and input size) it
starts two servers on 127.0.0.1, one after the other:

* ``naive``: the same ASGI stack (Starlette + uvicorn) scoring one image per request with the eager
  fp32 model, the blocking work offloaded to Starlette's thread pool as its docs advise, with the
  same preprocessing code;
* ``resnet serve``: dynamic batching on the engine ``resnet.optimize`` picks here.

Each is driven by 1, 8 and 32 concurrent clients (httpx, keep-alive; 8 per client process, since one
event loop of httpx clients saturates near that) for a fixed number of requests (after a warm-up of two
per client), and the script prints throughput and p50/p95/p99 latency per setting,
the ratio to the naive server in the same run, and the CPU line of ``resnet.device.describe()``.
The servers run in subprocesses; the clients share the machine with them, as real clients would not,
so the figures are a floor.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import multiprocessing as mp
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
# Input sizes of the checkpoints: the paper's CIFAR net at 32x32, the ImageNet net at 224x224.
MODELS = {"resnet20": (32, 10), "resnet50": (224, 1000)}


# ---------------------------------------------------------------- the naive server (run in a subprocess)


def naive_server(checkpoint: str, port: int) -> None:
    """One image per request, eager fp32, `run_in_threadpool`: the straightforward Starlette service."""
    import torch
    import uvicorn
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from resnet.serve.engine import load_served_model

    served = load_served_model(checkpoint, device="cpu")
    model = served.loaded.model.eval()

    def score(data: bytes) -> list[float]:
        x = served.preprocess(data, 50_000_000)[None]
        with torch.inference_mode():
            return torch.softmax(model(x).float(), dim=1)[0].tolist()

    async def predict(request: Request) -> JSONResponse:
        probs = await run_in_threadpool(score, await request.body())
        top = int(np.argmax(probs))
        return JSONResponse({"predictions": [{"class": served.class_names[top], "index": top, "probability": probs[top]}]})

    async def ready(request: Request) -> JSONResponse:
        return JSONResponse({"ready": True})

    app = Starlette(routes=[Route("/v1/predict", predict, methods=["POST"]), Route("/readyz", ready)])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# ---------------------------------------------------------------- the load generator


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen, timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"server at {url} not ready within {timeout} s")


CLIENTS_PER_PROCESS = 8  # one httpx event loop saturates near 8 busy connections on a small machine


async def drive(url: str, image: bytes, clients: int, requests: int, barrier: Any) -> tuple[float, float, list[float], int]:
    """``clients`` workers send ``requests`` requests in total after a warm-up; (start, end, latencies, failures)."""
    import httpx

    latencies: list[float] = []
    failures = 0
    left = requests

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal left, failures
        while left > 0:
            left -= 1
            start = time.perf_counter()
            response = await client.post("/v1/predict?top_k=1", content=image)
            latencies.append(time.perf_counter() - start)
            failures += response.status_code != 200

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:
        left = clients * 2  # warm-up: connections open, thread pools and engines settled
        await asyncio.gather(*(worker(client) for _ in range(clients)))
        latencies.clear()
        failures, left = 0, requests
        barrier.wait()  # every client process starts the timed part together (nothing else runs in this loop now)
        start = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(clients)))
        return start, time.perf_counter(), latencies, failures


def client_process(url: str, image: bytes, clients: int, requests: int, barrier: Any, results: Any) -> None:
    results.put(asyncio.run(drive(url, image, clients, requests, barrier)))


def load(url: str, image: bytes, clients: int, requests: int) -> tuple[float, list[float], int]:
    """Drive the server from enough processes that the load generator is not the bottleneck.

    (wall seconds from the first timed request to the last answer, latencies, failures).
    perf_counter is the system-wide monotonic clock on Linux, so the processes' times compare.
    """
    ctx = mp.get_context("spawn")
    procs = -(-clients // CLIENTS_PER_PROCESS)
    barrier, results = ctx.Barrier(procs), ctx.Queue()
    shares = [(clients // procs + (i < clients % procs), requests // procs + (i < requests % procs)) for i in range(procs)]
    workers = [ctx.Process(target=client_process, args=(url, image, c, n, barrier, results)) for c, n in shares]
    for w in workers:
        w.start()
    found = [results.get(timeout=1800) for _ in workers]
    for w in workers:
        w.join()
    latencies = [t for _, _, lat, _ in found for t in lat]
    return max(f[1] for f in found) - min(f[0] for f in found), latencies, sum(f[3] for f in found)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


def measure(command: list[str], port: int, image: bytes, clients: list[int], requests: int,
            ready_timeout: float) -> list[dict]:
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    rows = []
    try:
        wait_ready(url, proc, ready_timeout)
        for c in clients:
            n = max(requests, 8 * c)  # at least 8 full batches' worth at every concurrency
            wall, latencies, failures = load(url, image, c, n)
            rows.append({"clients": c, "requests": n, "failures": failures, "images_per_s": n / wall,
                         "p50_ms": 1000 * percentile(latencies, 50), "p95_ms": 1000 * percentile(latencies, 95),
                         "p99_ms": 1000 * percentile(latencies, 99)})
            print(json.dumps({"command": command[3:5], **rows[-1]}), file=sys.stderr, flush=True)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
    return rows


def make_checkpoint(folder: Path, arch: str) -> tuple[Path, bytes]:
    import torch
    from PIL import Image

    import resnet

    size, classes = MODELS[arch]
    torch.manual_seed(0)
    model = resnet.create_model(arch, num_classes=classes)
    path = resnet.save_weights(model, folder / f"{arch}.safetensors", metadata={
        "class_names": [f"class_{i}" for i in range(classes)], "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225], "image_size": [size, size]})
    # A JPEG a little larger than the input, so every request decodes and resizes as real ones do.
    rng = np.random.default_rng(0)
    side = size + size // 7
    pixels = (rng.random((side, side, 3)) * 64 + np.linspace(0, 190, side)[None, :, None]).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=90)
    return path, out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="resnet20,resnet50")
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--requests", default="resnet20:384,resnet50:128",
                        help="requests per (server, clients) setting, per model (at least 8 per client)")
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--serve-flags", default="", help="extra flags for resnet serve, e.g. '--no-compile'")
    parser.add_argument("--ready-timeout", type=float, default=600.0, help="seconds a server may take to warm up")
    parser.add_argument("--out", default=None, help="also write the table (markdown) here")
    parser.add_argument("--naive-server", nargs=2, metavar=("CHECKPOINT", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.naive_server:
        naive_server(args.naive_server[0], int(args.naive_server[1]))
        return

    from resnet import device as hw

    clients = [int(c) for c in args.clients.split(",")]
    requests = {k: int(v) for k, v in (item.split(":") for item in args.requests.split(","))}
    cpu = hw.describe()
    print(cpu, file=sys.stderr)
    load_before = os.getloadavg()
    lines = [f"CPU: `{cpu}`", "", "| model | server | clients | requests | images/s | p50 ms | p95 ms | p99 ms | "
             "x naive images/s | p99 vs naive |", "|---|---|---|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.models.split(","):
            checkpoint, image = make_checkpoint(Path(tmp), arch)
            n = requests.get(arch, 128)
            port = free_port()
            naive = measure([sys.executable, __file__, "--naive-server", str(checkpoint), str(port)], port, image,
                            clients, n, args.ready_timeout)
            port = free_port()
            ours = measure([sys.executable, "-m", "resnet", "serve", "--checkpoint", str(checkpoint), "--port", str(port),
                            "--max-batch", str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms),
                            "--max-queue", "1024", *args.serve_flags.split()], port, image, clients, n, args.ready_timeout)
            for name, rows in (("naive (eager fp32, 1 image/request)", naive), ("resnet serve", ours)):
                for row, base in zip(rows, naive):
                    ratio = row["images_per_s"] / base["images_per_s"]
                    p99 = row["p99_ms"] / base["p99_ms"]
                    lines.append(f"| {arch} | {name} | {row['clients']} | {row['requests']} | {row['images_per_s']:.1f} "
                                 f"| {row['p50_ms']:.1f} | {row['p95_ms']:.1f} | {row['p99_ms']:.1f} | {ratio:.2f} | "
                                 f"{p99:.2f} |" + (f" ({row['failures']} failed)" if row["failures"] else ""))
    lines.append("")
    lines.append(f"load average before {load_before[0]:.1f}, after {os.getloadavg()[0]:.1f}")
    text = "\n".join(lines)
    print(text)
    if args.out:
        from resnet.io import atomic_write_text

        atomic_write_text(args.out, text + "\n")


if __name__ == "__main__":
    main()
