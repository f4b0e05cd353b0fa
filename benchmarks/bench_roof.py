"""The compute roof of this CPU: how fast one big 3x3 convolution runs in fp32, bf16 and int8.

    .venv/bin/python benchmarks/bench_roof.py [--threads N] [--rounds 7] [--baseline IMAGES_PER_S] [--json]

A 3x3 convolution is the densest work in a ResNet, so its rate (multiply-adds per second, median of
``--rounds``) bounds what any engine can reach on a whole network that computes every multiply-add.
Dividing by resnet50's 4.089 G multiply-adds per 224x224 image gives an images/s ceiling per
precision; with ``--baseline`` (torchvision eager fp32 images/s from ``resnet bench`` on the same
machine) it also prints the ceiling as a ratio, next to the speed goals of benchmarks/speed.md.

fp32 and bf16 run through PyTorch (oneDNN, channels_last, inference mode); int8 is one ONNX QLinearConv
(uint8 activations x int8 weights, the VNNI kernels) through ONNX Runtime and OpenVINO, whichever is
faster, when the ``deploy`` extra is installed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np
import torch

from resnet import device as hw
from resnet import report

RESNET50_MACS = 4.089e9  # per 224x224 image (benchmarks/README.md, asserted in the tests)
# Shape: a resnet50 stage-2 3x3 conv at batch 8, big enough that the kernel runs at its peak.
BATCH, CHANNELS, SIZE = 8, 256, 28


def _median_seconds(run: Callable[[], object], rounds: int, repeats: int) -> float:
    run()  # warm-up: kernel selection, page faults
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeats):
            run()
        times.append((time.perf_counter() - start) / repeats)
    return statistics.median(times)


def conv_macs() -> float:
    return BATCH * SIZE * SIZE * CHANNELS * CHANNELS * 9


def torch_conv_rate(dtype: torch.dtype, rounds: int) -> float:
    conv = torch.nn.Conv2d(CHANNELS, CHANNELS, 3, padding=1, bias=False).to(dtype=dtype, memory_format=torch.channels_last)
    x = torch.randn(BATCH, CHANNELS, SIZE, SIZE, dtype=dtype).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        return conv_macs() / _median_seconds(lambda: conv(x), rounds, 5)


def _int8_conv_onnx() -> bytes | None:
    """One QLinearConv (uint8 activations x int8 weights, per-channel scales) as an ONNX model."""
    try:
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        return None
    rng = np.random.default_rng(0)
    weight = rng.integers(-127, 128, size=(CHANNELS, CHANNELS, 3, 3), dtype=np.int8)
    inits = [
        numpy_helper.from_array(np.array(0.02, np.float32), "x_scale"),
        numpy_helper.from_array(np.array(128, np.uint8), "x_zero"),
        numpy_helper.from_array(weight, "w"),
        numpy_helper.from_array(np.full(CHANNELS, 0.01, np.float32), "w_scale"),
        numpy_helper.from_array(np.zeros(CHANNELS, np.int8), "w_zero"),
        numpy_helper.from_array(np.array(0.05, np.float32), "y_scale"),
        numpy_helper.from_array(np.array(128, np.uint8), "y_zero"),
    ]
    node = helper.make_node("QLinearConv", ["x", "x_scale", "x_zero", "w", "w_scale", "w_zero", "y_scale", "y_zero"],
                            ["y"], pads=[1, 1, 1, 1], kernel_shape=[3, 3])
    shape = [BATCH, CHANNELS, SIZE, SIZE]
    graph = helper.make_graph([node], "conv", [helper.make_tensor_value_info("x", TensorProto.UINT8, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.UINT8, shape)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()


def int8_conv_rates(threads: int, rounds: int) -> dict[str, float]:
    """The int8 conv's rate in each engine present (ONNX Runtime, OpenVINO): the faster one is the roof."""
    model = _int8_conv_onnx()
    if model is None:
        return {}
    x = np.random.default_rng(1).integers(0, 256, size=(BATCH, CHANNELS, SIZE, SIZE), dtype=np.uint8)
    rates = {}
    try:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        rates["onnxruntime"] = conv_macs() / _median_seconds(lambda: session.run(None, {"x": x}), rounds, 5)
    except ImportError:
        pass
    try:
        import openvino as ov

        core = ov.Core()
        compiled = core.compile_model(core.read_model(model, b""), "CPU",
                                      {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"})
        request = compiled.create_infer_request()
        rates["openvino"] = conv_macs() / _median_seconds(lambda: request.infer({0: x}), rounds, 5)
    except ImportError:
        pass
    return rates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="default: torch's (one per core)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--baseline", type=float, default=None, help="torchvision eager fp32 images/s, same machine")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    report.configure()
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    rates = {"fp32": torch_conv_rate(torch.float32, args.rounds)}
    if hw.native_bf16("cpu"):
        rates["bf16"] = torch_conv_rate(torch.bfloat16, args.rounds)
    engines = {"fp32": "torch (oneDNN)", "bf16": "torch (oneDNN)"}
    int8 = int8_conv_rates(threads, args.rounds)
    if int8:
        engines["int8"], rates["int8"] = max(int8.items(), key=lambda item: item[1])
        engines["int8"] += " (" + ", ".join(f"{k} {v / 1e9:.0f}" for k, v in int8.items()) + " GMAC/s)"
    rows = []
    for precision, rate in rates.items():
        ceiling = rate / RESNET50_MACS
        row = {"precision": precision, "engine": engines[precision], "conv_gmacs_per_s": round(rate / 1e9, 1),
               "resnet50_images_per_s_ceiling": round(ceiling, 1)}
        if args.baseline:
            row["ceiling_x_baseline"] = round(ceiling / args.baseline, 2)
        rows.append(row)
    header = f"{hw.describe('cpu')}; 3x3 conv {BATCH}x{CHANNELS}x{SIZE}x{SIZE}"
    if args.json:
        report.result_json({"machine": header, "rows": rows})
    else:
        report.result(header)
        columns = list(rows[0])
        report.table(None, columns, [[row[c] for c in columns] for row in rows])
    return 0


if __name__ == "__main__":
    sys.exit(main())
