"""`resnet serve`: an HTTP prediction service for a checkpoint, with dynamic batching.

Endpoints: POST /v1/predict (one image: raw bytes or multipart; ?top_k=), POST /v1/predict/batch
(multipart, several images), GET /v1/model, /healthz, /readyz, /metrics (Prometheus), and the Open
Inference Protocol (KServe v2) under /v2. Needs the serve extra: pip install .[serve].
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve a checkpoint over HTTP with dynamic batching", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=None, metavar="RUN_OR_FILE",
                   help="a run folder (its best checkpoint) or a .safetensors file")
    p.add_argument("--pretrained", default=None, metavar="NAME",
                   help="a published weight set by name (`resnet models --pretrained`), with its classes and "
                        "preprocessing; with --checkpoint FILE, that file is used for it")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1); any other than loopback requires --api-key-file")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--name", default=None, help="the model's name in the API (default: its architecture)")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: CUDA when present)")
    p.add_argument("--fast", action=argparse.BooleanOptionalAction, default=True,
                   help="score on the engine resnet.optimize picks here (default); --no-fast: the eager fp32 model")
    p.add_argument("--precision", default="auto", help="with --fast: auto, fp32, bf16, int8")
    p.add_argument("--backend", default="auto", help="with --fast: auto, torch, onnxruntime, openvino")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                   help="with --fast: also try torch.compile (slower start)")
    p.add_argument("--max-batch", type=int, default=32, help="most images scored in one call (default 32)")
    p.add_argument("--max-wait-ms", type=float, default=5.0,
                   help="how long the first image of a batch waits for company (default 5)")
    p.add_argument("--max-queue", type=int, default=256,
                   help="images waiting for a batch; beyond it requests get 503 + Retry-After (default 256)")
    p.add_argument("--max-body-mb", type=float, default=10.0, help="larger request bodies get 413 (default 10)")
    p.add_argument("--max-images", type=int, default=64, help="images in one batch request (default 64)")
    p.add_argument("--max-image-pixels", type=int, default=None,
                   help="width x height an image may declare; more is refused as a decompression bomb (default 50M)")
    p.add_argument("--read-timeout-s", type=float, default=10.0,
                   help="a request's headers and body must arrive within this, else 408 / closed (default 10)")
    p.add_argument("--shutdown-timeout-s", type=float, default=30.0,
                   help="on SIGTERM, how long requests in flight may take to finish (default 30)")
    p.add_argument("--decode-threads", type=int, default=4, help="threads decoding images (default 4)")
    p.add_argument("--api-key-file", default=None, metavar="FILE",
                   help="a file holding the key requests must send (Authorization: Bearer KEY or X-API-Key)")
    p.add_argument("--unsafe-load", action="store_true", help="allow full unpickling of a non-safetensors checkpoint you trust")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from resnet.errors import ResNetError

    try:
        from resnet.serve import ServeSettings, serve
        from resnet.serve.engine import EngineOptions
        from resnet.serve.limits import DEFAULT_MAX_IMAGE_PIXELS, MB, Limits
    except ImportError as exc:
        raise ResNetError(f"resnet serve needs the serve extra ({exc.name} is missing): pip install 'resnet[serve]'") from None
    limits = Limits(
        max_body_bytes=int(args.max_body_mb * MB), max_queue=args.max_queue,
        max_image_pixels=args.max_image_pixels or DEFAULT_MAX_IMAGE_PIXELS, read_timeout_s=args.read_timeout_s,
        max_images=args.max_images, shutdown_timeout_s=args.shutdown_timeout_s,
    )
    engine = EngineOptions(fast=args.fast, precision=args.precision, backend=args.backend, compile=args.compile,
                           max_batch=args.max_batch)
    serve(ServeSettings(
        checkpoint=args.checkpoint, pretrained=args.pretrained, host=args.host, port=args.port, name=args.name, device=args.device,
        unsafe=args.unsafe_load, engine=engine, max_wait_ms=args.max_wait_ms, limits=limits,
        api_key_file=args.api_key_file, decode_threads=args.decode_threads,
    ))
    return 0
