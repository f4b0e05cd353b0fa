"""Parity of `resnet convert` with the source framework: the max abs logit difference per format.

Builds random-weight models with the real Keras 3 (torch backend; BN statistics randomized), saves
each as Keras 3 legacy .h5, Keras 2-named .h5 and .keras, imports them without Keras and compares
the logits; then exports the import back with `--to keras` and loads it into a fresh Keras model.
Prints a markdown table and the CPU line (paste into benchmarks/convert.md).

    .venv/bin/python benchmarks/bench_convert.py            # full-size nets at 224x224 (tutorial: 64x64)
    .venv/bin/python benchmarks/bench_convert.py --small    # the reduced nets of the test suite
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import keras_models as km  # noqa: E402  (sets KERAS_BACKEND=torch)
from test_convert_keras import keras2_file  # noqa: E402

import keras  # noqa: E402
from resnet import device, import_weights  # noqa: E402
from resnet.convert import export_weights  # noqa: E402
from resnet.models import create_model  # noqa: E402

# Each option set back to torchvision's value: how far the logits move (why the variants exist).
ABLATIONS = {
    "resnet50_keras": [("bn_eps", 1e-5), ("stride_in_1x1", False)],
    "resnet50v2_keras": [("bn_eps", 1e-5), ("pool_padding", "symmetric")],
    "resnet50_tutorial": [("bn_eps", 1e-5), ("pool_padding", "symmetric")],
}


def models(small: bool) -> list[tuple[str, keras.Model, int, object]]:
    """(label, Keras model, input size, a builder of a fresh one for the export check)."""
    if small:
        return [
            ("keras.applications ResNet50 (reduced)", km.small_apps_resnet(False), 64, lambda: km.small_apps_resnet(False)),
            ("keras.applications ResNet50V2 (reduced)", km.small_apps_resnet(True), 64, lambda: km.small_apps_resnet(True)),
            ("deeplearning.ai tutorial ResNet50 (reduced)", km.tutorial_resnet(), 64, km.tutorial_resnet),
        ]
    full = []
    for name in ("ResNet50", "ResNet50V2", "ResNet101", "ResNet152V2"):
        build = getattr(keras.applications, name)
        full.append((f"keras.applications {name}", km.randomize(build(weights=None, classifier_activation=None)), 224,
                     lambda build=build: build(weights=None, classifier_activation=None)))  # fmt: skip
    tutorial = (3, 4, 6, 3), (64, 128, 256, 512)
    full.append(("deeplearning.ai tutorial ResNet50", km.tutorial_resnet(*tutorial), 64, lambda: km.tutorial_resnet(*tutorial)))
    return full


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="the reduced nets of the tests (seconds, not minutes)")
    args = parser.parse_args()
    torch.manual_seed(0)
    rows, ablations = [], []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for label, model, size, fresh in models(args.small):
            images = np.random.default_rng(1).normal(size=(4, 3, size, size)).astype(np.float32)
            expected = km.logits(model, images)
            model.save(folder / "m.h5")
            model.save(folder / "m.keras")
            files = {"Keras 3 .h5": folder / "m.h5", "Keras 2 .h5 (kernel:0)": keras2_file(folder / "m.h5", folder / "k2.h5"), ".keras": folder / "m.keras"}
            for fmt, path in files.items():
                ours = import_weights(path)
                with torch.no_grad():
                    got = ours(torch.from_numpy(images)).numpy()
                rows.append((label, fmt, ours.model_name, float(np.abs(got - expected).max()), bool((got.argmax(1) == expected.argmax(1)).all())))
            for option, value in ABLATIONS.get(ours.model_name, []):
                wrong = create_model(ours.model_name, num_classes=ours.num_classes, **{**ours.model_options, option: value}).eval()
                wrong.load_state_dict(ours.state_dict())
                with torch.no_grad():
                    got = wrong(torch.from_numpy(images)).numpy()
                ablations.append((label, f"{option}={value!r}", float(np.abs(got - expected).max()), bool((got.argmax(1) == expected.argmax(1)).all())))
            export_weights(ours, folder / "back.h5", "keras")
            back = fresh()
            back.load_weights(folder / "back.h5")
            got = km.logits(back, images)
            rows.append((label, "export --to keras, loaded by Keras", ours.model_name, float(np.abs(got - expected).max()), bool((got.argmax(1) == expected.argmax(1)).all())))
    print(f"keras {keras.__version__} (torch backend); {device.describe()}")
    print("| source | format | imported as | max abs logit diff | same top-1 |")
    print("|---|---|---|---|---|")
    for label, fmt, arch, diff, same in rows:
        print(f"| {label} | {fmt} | `{arch}` | {diff:.1e} | {'yes' if same else 'NO'} |")
    print("\n| source | option set to torchvision's value | max abs logit diff | same top-1 |")
    print("|---|---|---|---|")
    for label, option, diff, same in ablations:
        print(f"| {label} | `{option}` | {diff:.1e} | {'yes' if same else 'NO'} |")


if __name__ == "__main__":
    main()
