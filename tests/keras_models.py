"""Small random-weight Keras ResNets made by the real Keras 3 (torch backend), for the import tests.

keras.applications' own stack builders make reduced-depth/width ResNet50 and ResNet50V2 nets; the
deeplearning.ai tutorial's ResNet50 is written out here in its own layer names, reduced as well.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers  # noqa: E402
from keras.src.applications import resnet as keras_resnet  # noqa: E402


def randomize(model: keras.Model, seed: int = 0) -> keras.Model:
    """Non-trivial BN statistics and affine terms, and non-zero biases, so every mapping mistake shows."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([
                rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.1, beta.shape),
                rng.normal(0, 0.1, mean.shape), rng.uniform(0.5, 1.5, var.shape),
            ])  # fmt: skip
        elif isinstance(layer, (layers.Conv2D, layers.Dense)) and layer.use_bias:
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel, rng.normal(0, 0.1, bias.shape)])
    return model


def logits(model: keras.Model, images_nchw: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(images_nchw.transpose(0, 2, 3, 1))
    return keras.ops.convert_to_numpy(model(x, training=False))


def small_apps_resnet(v2: bool, depths: tuple[int, ...] = (2, 2, 2, 2), widths: tuple[int, ...] = (64, 16, 24, 32), classes: int = 5, size: int = 64) -> keras.Model:
    """keras.applications' ResNet (v1 or V2) with fewer blocks and channels; the stem stays 64 wide as in Keras."""
    stack = keras_resnet.stack_residual_blocks_v2 if v2 else keras_resnet.stack_residual_blocks_v1

    def stack_fn(x):
        for i, (blocks, filters) in enumerate(zip(depths, widths)):
            last = i == len(depths) - 1
            if v2:
                x = stack(x, filters, blocks, stride1=1 if last else 2, name=f"conv{i + 2}")
            else:
                x = stack(x, filters, blocks, stride1=1 if i == 0 else 2, name=f"conv{i + 2}")
        return x

    model = keras_resnet.ResNet(stack_fn, v2, True, include_top=True, weights=None, input_shape=(size, size, 3),
                                classes=classes, classifier_activation=None, name="small_resnet")  # fmt: skip
    return randomize(model)


def _tutorial_block(x, filters: tuple[int, int, int], stage: int, block: str, stride: int | None):
    """The tutorial's convolutional_block (stride given) or identity_block (stride None)."""
    f1, f2, f3 = filters
    conv, bn = f"res{stage}{block}_branch", f"bn{stage}{block}_branch"
    shortcut = x
    x = layers.Conv2D(f1, 1, strides=stride or 1, padding="valid", name=conv + "2a")(x)
    x = layers.BatchNormalization(axis=3, name=bn + "2a")(x)
    x = layers.Activation("relu")(x)
    x = layers.Conv2D(f2, 3, padding="same", name=conv + "2b")(x)
    x = layers.BatchNormalization(axis=3, name=bn + "2b")(x)
    x = layers.Activation("relu")(x)
    x = layers.Conv2D(f3, 1, padding="valid", name=conv + "2c")(x)
    x = layers.BatchNormalization(axis=3, name=bn + "2c")(x)
    if stride is not None:
        shortcut = layers.Conv2D(f3, 1, strides=stride, padding="valid", name=conv + "1")(shortcut)
        shortcut = layers.BatchNormalization(axis=3, name=bn + "1")(shortcut)
    x = layers.Add()([x, shortcut])
    return layers.Activation("relu")(x)


def tutorial_resnet(depths: tuple[int, ...] = (2, 2, 2, 2), widths: tuple[int, ...] = (8, 12, 16, 24), classes: int = 6) -> keras.Model:
    """The deeplearning.ai SIGNS tutorial's ResNet50 (64x64x3 input), with fewer blocks and channels:
    ZeroPadding2D(3), conv1 7x7/2, bn_conv1 (eps 1e-3), an unpadded 3x3/2 max-pool, stages 2..5
    (stride on the first 1x1), a 2x2 average pool, Flatten and the Dense 'fc' layer."""
    inputs = keras.Input((64, 64, 3))
    x = layers.ZeroPadding2D((3, 3))(inputs)
    x = layers.Conv2D(widths[0], 7, strides=2, name="conv1")(x)
    x = layers.BatchNormalization(axis=3, name="bn_conv1")(x)
    x = layers.Activation("relu")(x)
    x = layers.MaxPooling2D((3, 3), strides=(2, 2))(x)
    for i, (blocks, width) in enumerate(zip(depths, widths)):
        filters = (width, width, 4 * width)
        x = _tutorial_block(x, filters, i + 2, "a", 1 if i == 0 else 2)
        for b in range(1, blocks):
            x = _tutorial_block(x, filters, i + 2, "abcdefghijklmnopqrstuvwxyz"[b], None)
    x = layers.AveragePooling2D((2, 2), padding="same")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(classes, name="fc")(x)
    return randomize(keras.Model(inputs, x, name="ResNet50"))
