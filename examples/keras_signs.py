"""The Keras SIGNS tutorial (deeplearning.ai's "Residual Networks"), step by step on `resnet`.

Run: python examples/keras_signs.py datasets/train_signs.h5 [--keras-model ResNet50.h5] [--image photo.jpg]

As in the tutorial: load the SIGNS arrays (1080 training and 120 test images of 64x64x3, 6 classes),
scale them to 0..1, one-hot the labels, build its ResNet50 (`resnet50_tutorial`: the tutorial's
layer order, BN epsilon and pooling), compile with Adam and cross-entropy, fit for 2 epochs at batch
32, evaluate, load the tutorial's trained `ResNet50.h5` (made by Keras) and evaluate it, predict one
image, print the summary and draw the network.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import h5py
import numpy as np

import resnet


def load_dataset(train_path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The tutorial's load_dataset: train_signs.h5 and the test_signs.h5 beside it."""
    test_path = train_path.with_name(train_path.name.replace("train", "test"))
    with h5py.File(train_path, "r") as train, h5py.File(test_path, "r") as test:
        return (np.array(train["train_set_x"][:]), np.array(train["train_set_y"][:]),
                np.array(test["test_set_x"][:]), np.array(test["test_set_y"][:]), np.array(test["list_classes"][:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("train_h5", type=Path, help="train_signs.h5 (test_signs.h5 beside it)")
    parser.add_argument("--keras-model", type=Path, help="the tutorial's trained ResNet50.h5, saved by Keras")
    parser.add_argument("--image", type=Path, help="a photo to classify (default: the first test image)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--plot", type=Path, default=Path("model.png"))
    args = parser.parse_args()

    X_train_orig, Y_train_orig, X_test_orig, Y_test_orig, classes = load_dataset(args.train_h5)
    X_train, X_test = X_train_orig / 255.0, X_test_orig / 255.0  # normalize image vectors
    Y_train, Y_test = np.eye(6)[Y_train_orig.reshape(-1)], np.eye(6)[Y_test_orig.reshape(-1)]  # one-hot
    print("number of training examples = " + str(X_train.shape[0]))
    print("number of test examples = " + str(X_test.shape[0]))
    print("X_train shape: " + str(X_train.shape))
    print("Y_train shape: " + str(Y_train.shape))
    print("X_test shape: " + str(X_test.shape))
    print("Y_test shape: " + str(Y_test.shape))

    model = resnet.Model("resnet50_tutorial", num_classes=6, in_chans=3)  # ResNet50(input_shape=(64, 64, 3), classes=6)
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    model.fit(X_train, Y_train, epochs=args.epochs, batch_size=args.batch_size)
    preds = model.evaluate(X_test, Y_test)
    print("Loss = " + str(preds[0]))
    print("Test Accuracy = " + str(preds[1]))

    if args.keras_model:
        model = resnet.load_model(args.keras_model)  # load_model('ResNet50.h5')
        model.compile(metrics=["accuracy"])
        preds = model.evaluate(X_test, Y_test)
        print("Loss = " + str(preds[0]))
        print("Test Accuracy = " + str(preds[1]))

    if args.image:
        probabilities = model.predict(str(args.image))
    else:
        probabilities = model.predict(X_test_orig[:1])
    print("class prediction vector [p(0), p(1), p(2), p(3), p(4), p(5)] = ")
    print(np.round(probabilities, 4))

    model.summary(depth=1)
    print("diagram: " + str(model.plot(args.plot)))


if __name__ == "__main__":
    main()
