"""Datasets: one name everywhere (``--data NAME_OR_PATH``), one ``DataSplit`` of uint8 images back.

``load(spec, split)`` reads ``fashion-mnist`` (IDX files), ``cifar10``/``cifar100`` (the python
pickle batches, through a restricted unpickler), an image-folder tree, or an HDF5 file in the SIGNS
layout. ``DataSplit.batches`` yields normalized, optionally augmented batches on the training
device; ``preprocess_images`` turns image files into a model-ready batch for prediction.
"""

from resnet.data.images import IMAGE_EXTENSIONS, preprocess_images
from resnet.data.loading import NAMED, DataSplits, available_splits, load, load_splits
from resnet.data.split import DataSplit

__all__ = [
    "DataSplit", "DataSplits", "IMAGE_EXTENSIONS", "NAMED", "available_splits", "load", "load_splits", "preprocess_images",
]
