"""resnet.data formats: Fashion-MNIST IDX, CIFAR pickles, SIGNS HDF5, on fixtures in the exact on-disk layout."""

from __future__ import annotations

import gzip
import logging
import os
import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from resnet.data import DataSplit, available_splits, load, locate
from resnet.data import testing as fixtures
from resnet.data.augment import channel_stats
from resnet.data.cifar import CifarUnpickler, read_batch
from resnet.data.idx import FASHION_MNIST_CLASSES
from resnet.errors import ResNetError


@pytest.fixture
def no_system_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point every default search place at empty folders, so only what a test writes is found."""
    empty = tmp_path / "nowhere"
    empty.mkdir()
    monkeypatch.setattr(locate, "SYSTEM_DIR", empty / "system")
    monkeypatch.setattr(locate, "CACHE_DIR", empty / "cache")
    monkeypatch.delenv("RESNET_DATA", raising=False)
    return empty


@contextmanager
def _warnings_logged() -> Iterator[list[str]]:
    """Warnings the library reports through the "resnet" logger (however it was configured)."""
    messages: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: messages.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("resnet")
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)


def _read_idx_raw(path: Path) -> np.ndarray:
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


# -- Fashion-MNIST ----------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_idx_files(tmp_path: Path, no_system_data: Path, gz: bool) -> None:
    folder = fixtures.write_fashion_mnist(tmp_path / "fm", train=50, test=20, gz=gz)
    train = load("fashion-mnist", data_dir=folder)
    test = load("fashion-mnist", "test", data_dir=folder)
    suffix = ".gz" if gz else ""
    expected_images = _read_idx_raw(folder / f"train-images-idx3-ubyte{suffix}")
    expected_labels = _read_idx_raw(folder / f"train-labels-idx1-ubyte{suffix}")
    assert (len(train), len(test)) == (50, 20)
    assert (train.in_chans, train.image_size, train.num_classes) == (1, (28, 28), 10)
    assert train.class_names == FASHION_MNIST_CLASSES
    assert train.labels.tolist() == expected_labels.tolist()
    assert torch.equal(train.images[:, 0], torch.from_numpy(expected_images.copy()))
    pixels = expected_images.astype(np.float64) / 255
    assert train.mean == pytest.approx((pixels.mean(),), abs=1e-5)
    assert train.std == pytest.approx((pixels.std(),), abs=1e-5)
    assert test.mean == train.mean and test.std == train.std  # statistics always from the training split


def test_fashion_mnist_lookup_order(tmp_path: Path, no_system_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = fixtures.write_fashion_mnist(tmp_path / "env", train=12, test=4)
    given = fixtures.write_fashion_mnist(tmp_path / "given" / "fashion-mnist", train=14, test=4)
    monkeypatch.setenv("RESNET_DATA", str(env))
    assert len(load("fashion-mnist")) == 12  # $RESNET_DATA
    assert len(load("fashion_mnist", data_dir=given.parent)) == 14  # --data-dir first, in its fashion-mnist/ sub-folder
    with _warnings_logged() as messages:
        assert len(load("fashion-mnist", data_dir=tmp_path / "elsewhere")) == 12  # not there: falls back, and says so
    assert messages == [f"warning: fashion-mnist is not in {tmp_path / 'elsewhere'}; using {env}"]
    # torchvision's download layout under the cache folder is found too.
    monkeypatch.delenv("RESNET_DATA")
    fixtures.write_fashion_mnist(locate.CACHE_DIR / "FashionMNIST" / "raw", train=16, test=4)
    assert len(load("FashionMNIST")) == 16


def test_fashion_mnist_not_found_lists_where_it_looked(tmp_path: Path, no_system_data: Path) -> None:
    with pytest.raises(ResNetError) as err:
        load("fashion-mnist", data_dir=tmp_path / "mine")
    message = str(err.value)
    assert "\n" not in message
    for text in (str(tmp_path / "mine"), str(locate.SYSTEM_DIR / "fashion-mnist"), "apt-get install dataset-fashion-mnist",
                 "--download", "train-images-idx3-ubyte"):
        assert text in message


def test_download_only_when_asked(tmp_path: Path, no_system_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, object]] = []

    def fake_download(dataset: str, data_dir: object) -> None:  # stands in for torchvision's downloader
        calls.append((dataset, data_dir))
        fixtures.write_fashion_mnist(locate.download_root(data_dir) / "FashionMNIST" / "raw", train=8, test=4)

    monkeypatch.setattr(locate, "torchvision_download", fake_download)
    with pytest.raises(ResNetError, match="not found"):
        load("fashion-mnist", data_dir=tmp_path / "dl")
    assert calls == []
    split = load("fashion-mnist", data_dir=tmp_path / "dl", download=True)
    assert len(split) == 8 and calls == [("fashion-mnist", tmp_path / "dl")]
    load("fashion-mnist", "test", data_dir=tmp_path / "dl", download=True)
    assert len(calls) == 1  # already there: not fetched again


def test_fashion_mnist_bad_files(tmp_path: Path, no_system_data: Path) -> None:
    folder = fixtures.write_fashion_mnist(tmp_path / "fm", train=30, test=10, gz=False)
    labels = folder / "train-labels-idx1-ubyte"
    fixtures.write_idx(labels, np.zeros(29, np.uint8), 2049)  # one label short
    with pytest.raises(ResNetError, match="29 labels.*30 images") as err:
        load("fashion-mnist", data_dir=folder)
    assert str(labels) in str(err.value)

    fixtures.write_idx(labels, np.zeros(30, np.uint8), 2051)  # an image file's magic number
    with pytest.raises(ResNetError, match="magic number 2051, expected 2049"):
        load("fashion-mnist", data_dir=folder)

    images = folder / "train-images-idx3-ubyte"
    fixtures.write_idx(labels, np.zeros(30, np.uint8), 2049)
    images.write_bytes(images.read_bytes()[:-100])  # truncated
    with pytest.raises(ResNetError, match="truncated") as err:
        load("fashion-mnist", data_dir=folder)
    assert str(images) in str(err.value)


def test_resize_to_requested_image_size(tmp_path: Path, no_system_data: Path) -> None:
    folder = fixtures.write_fashion_mnist(tmp_path / "fm", train=10, test=4)
    split = load("fashion-mnist", data_dir=folder, image_size=32)
    assert split.image_size == (32, 32) and split.images.shape == (10, 1, 32, 32)
    x, _ = next(split.batches(4))
    assert x.shape == (4, 1, 32, 32)


# -- CIFAR -------------------------------------------------------------------------------------


def test_cifar10_python_batches(tmp_path: Path, no_system_data: Path) -> None:
    folder = fixtures.write_cifar(tmp_path, "cifar10", per_batch=8, test=6)
    train = load("cifar10", data_dir=tmp_path)
    test = load("cifar-10", "test", data_dir=tmp_path)
    assert (len(train), len(test)) == (40, 6)
    assert (train.in_chans, train.image_size) == (3, (32, 32))
    assert train.class_names[:3] == ["airplane", "automobile", "bird"] and train.num_classes == 10
    with open(folder / "data_batch_2", "rb") as fh:
        batch = pickle.load(fh, encoding="latin1")  # the trusted reference reader, on our own fixture
    assert train.labels[8:16].tolist() == batch["labels"]
    assert torch.equal(train.images[8:16], torch.from_numpy(batch["data"].reshape(-1, 3, 32, 32)))
    assert train.mean == channel_stats(train.images)[0]


def test_cifar_batches_written_by_numpy_1(tmp_path: Path, no_system_data: Path) -> None:
    """The original files name numpy 1's module path (numpy.core), which numpy 2 moved to numpy._core."""
    folder = fixtures.write_cifar(tmp_path, "cifar10", per_batch=4, test=4)
    before = read_batch(folder / "data_batch_1")
    raw = (folder / "data_batch_1").read_bytes()
    assert b"numpy._core.multiarray\n_reconstruct" in raw  # GLOBAL opcode: newline-terminated names
    (folder / "data_batch_1").write_bytes(raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    after = read_batch(folder / "data_batch_1")
    assert np.array_equal(after["data"], before["data"]) and after["labels"] == before["labels"]


def test_cifar100_python_batches(tmp_path: Path, no_system_data: Path) -> None:
    fixtures.write_cifar(tmp_path, "cifar100", per_batch=4, test=5)
    train = load("cifar100", data_dir=tmp_path / "cifar-100-python")  # the batch folder itself also works
    test = load("cifar100", "test", data_dir=tmp_path)
    assert (len(train), len(test), train.num_classes) == (20, 5, 100)
    assert train.class_names[7] == "class_07"
    assert available_splits("cifar100", data_dir=tmp_path) == ("train", "test")


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, ...]:
        return (os.system, (f"touch {self.marker}",))


def test_tampered_cifar_batch_is_refused_and_runs_nothing(tmp_path: Path, no_system_data: Path) -> None:
    folder = fixtures.write_cifar(tmp_path, "cifar10", per_batch=4, test=4)
    marker = tmp_path / "pwned"
    batch = {"data": np.zeros((4, 3072), np.uint8), "labels": [0, 1, 2, 3], "extra": _RunsCode(marker)}
    (folder / "data_batch_3").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(ResNetError, match="refusing to load .*data_batch_3.*(system|posix)"):
        load("cifar10", data_dir=tmp_path)
    assert not marker.exists()
    # The plain pickle module would have run it: the test's premise holds.
    pickle.loads((folder / "data_batch_3").read_bytes())
    assert marker.exists()


def test_cifar_unpickler_admits_only_numpy_arrays() -> None:
    import io

    ok = pickle.dumps({"data": np.arange(6, dtype=np.uint8).reshape(2, 3), "labels": [1, 2]}, protocol=2)
    assert CifarUnpickler(io.BytesIO(ok), encoding="latin1").load()["data"].tolist() == [[0, 1, 2], [3, 4, 5]]
    for evil in (pickle.dumps(os.getcwd), pickle.dumps(eval), pickle.dumps(torch.Tensor)):
        with pytest.raises(pickle.UnpicklingError, match="refusing"):
            CifarUnpickler(io.BytesIO(evil)).load()


def test_cifar_batch_errors_name_file_and_key(tmp_path: Path, no_system_data: Path) -> None:
    folder = fixtures.write_cifar(tmp_path, "cifar10", per_batch=4, test=4)
    path = folder / "data_batch_1"
    fixtures.write_py2_pickle(path, {b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1, 2]})
    with pytest.raises(ResNetError, match="3 labels under 'labels' but 4 images") as err:
        load("cifar10", data_dir=tmp_path)
    assert str(path) in str(err.value)
    fixtures.write_py2_pickle(path, {b"labels": [0]})
    with pytest.raises(ResNetError, match="has no key 'data'"):
        load("cifar10", data_dir=tmp_path)
    path.write_bytes(path.read_bytes()[:10])
    with pytest.raises(ResNetError, match="damaged"):
        read_batch(path)


def test_cifar_not_found(tmp_path: Path, no_system_data: Path) -> None:
    with pytest.raises(ResNetError, match=r"cifar10 not found; looked in: .*cifar-10-batches-py.*--download"):
        load("cifar10", data_dir=tmp_path)


# -- HDF5 (SIGNS layout) -----------------------------------------------------------------------


@pytest.mark.parametrize("same_file", [False, True])
def test_signs_hdf5(tmp_path: Path, same_file: bool) -> None:
    path = fixtures.write_signs(tmp_path, train=18, test=7, size=16, same_file=same_file)
    train = load(path)
    test = load(str(path), "test")
    assert (len(train), len(test)) == (18, 7)
    assert (train.in_chans, train.image_size, train.class_names) == (3, (16, 16), ["0", "1", "2", "3", "4", "5"])
    with h5py.File(path) as fh:
        assert torch.equal(train.images, torch.from_numpy(fh["train_set_x"][()]).permute(0, 3, 1, 2))
        assert train.labels.tolist() == fh["train_set_y"][()].tolist()


def test_hdf5_custom_keys_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "faces.h5"
    with h5py.File(path, "w") as fh:
        fh["pixels"] = np.zeros((5, 8, 8), np.uint8)
        fh["label"] = np.array([[0, 1, 0, 1, 1]])  # the (1, N) shape the SIGNS notebooks reshape to
    with pytest.raises(ResNetError, match="has no key 'train_set_x'.*pixels") as err:
        load(path)
    assert str(path) in str(err.value)
    split = load(f"{path}?train_x=pixels&train_y=label")
    assert (len(split), split.in_chans, split.class_names, split.labels.tolist()) == (5, 1, ["0", "1"], [0, 1, 0, 1, 1])
    assert len(load(path, h5_keys={"train_x": "pixels", "train_y": "label"})) == 5
    with pytest.raises(ResNetError, match="has no test split"):
        load(path, "test", h5_keys={"train_x": "pixels", "train_y": "label"})
    with pytest.raises(ResNetError, match="has no key 'train_set_y'"):
        load(path, h5_keys={"train_x": "pixels"})
    with pytest.raises(ResNetError, match="unknown HDF5 key option"):
        load(f"{path}?images=pixels")

    with h5py.File(path, "a") as fh:
        fh["short"] = np.array([0, 1])
    with pytest.raises(ResNetError, match="2 labels under 'short' but 5 images under 'pixels'"):
        load(path, h5_keys={"train_x": "pixels", "train_y": "short"})


# -- spec, splits -------------------------------------------------------------------------------


def test_unknown_spec_and_split(tmp_path: Path) -> None:
    with pytest.raises(ResNetError, match="did you mean cifar10"):
        load("cifar01")
    with pytest.raises(ResNetError, match="unknown split 'training'"):
        load("cifar10", "training")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ResNetError, match="neither an image folder nor an .h5 file"):
        load(tmp_path / "notes.txt")


def test_validation_carved_from_train(tmp_path: Path, no_system_data: Path) -> None:
    fixtures.write_cifar(tmp_path, "cifar10", per_batch=10, test=4)
    full = load("cifar10", data_dir=tmp_path)
    train = load("cifar10", data_dir=tmp_path, val_size=5, seed=3)  # the paper's 45k/5k split, in miniature
    val = load("cifar10", "val", data_dir=tmp_path, val_size=5, seed=3)
    assert (len(train), len(val)) == (45, 5)
    # Disjoint, together the whole training set: match each image back to its row in the full set.
    rows = {full.images[i].numpy().tobytes(): i for i in range(len(full))}
    train_rows = {rows[img.numpy().tobytes()] for img in train.images}
    val_rows = {rows[img.numpy().tobytes()] for img in val.images}
    assert not train_rows & val_rows and train_rows | val_rows == set(range(50))
    assert val.mean == train.mean == channel_stats(train.images)[0] != full.mean
    assert torch.equal(load("cifar10", "val", data_dir=tmp_path, val_size=5, seed=3).labels, val.labels)  # same seed, same split
    other = load("cifar10", "val", data_dir=tmp_path, val_fraction=0.1, seed=4)
    assert len(other) == 5 and not torch.equal(other.images, val.images)
    with pytest.raises(ResNetError, match="no validation split of its own"):
        load("cifar10", "val", data_dir=tmp_path)
    with pytest.raises(ResNetError, match="between 0 and 1"):
        load("cifar10", data_dir=tmp_path, val_fraction=1.5)


def test_datasplit_subset_and_normalization(tmp_path: Path, no_system_data: Path) -> None:
    fixtures.write_fashion_mnist(tmp_path, train=20, test=4)
    split = load("fashion-mnist", data_dir=tmp_path)
    small = split.subset(range(5))
    assert isinstance(small, DataSplit) and len(small) == 5 and small.mean == split.mean
    renormed = small.with_normalization((0.5,), (0.25,))
    x, _ = next(renormed.batches(5))
    assert torch.allclose(x, (small.images.float() / 255 - 0.5) / 0.25, atol=1e-5)
    with pytest.raises(ResNetError, match="1 channels"):
        small.with_normalization((0.5, 0.5, 0.5), (0.2, 0.2, 0.2))
