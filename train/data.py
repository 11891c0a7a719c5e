"""From manifest records to Keras batches, through the one preprocessing implementation."""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
from tqdm import tqdm

from cxr_edge.imaging import read_image
from cxr_edge.manifest import Record
from cxr_edge.preprocess import PreprocessSpec, preprocess
from train.augment import make_augment


def load_images(
    records: Sequence[Record], *, desc: str = "decode", progress: bool = True
) -> list[np.ndarray]:
    """Decodes every record's image once (float32 in [0, 1]) so epochs do not re-read files.

    The kit's images are at most 512 px, so the whole kit fits in about 1 GB; a larger data set
    would want a disk cache instead.
    """
    return [read_image(r.file)[0] for r in tqdm(records, desc=desc, disable=not progress, leave=False)]


def label_indices(records: Sequence[Record], labels: Sequence[str]) -> np.ndarray:
    """Class index of each record in the task's label order."""
    index = {label: i for i, label in enumerate(labels)}
    return np.array([index[r.label] for r in records], dtype=np.int64)


def preprocess_all(images: Sequence[np.ndarray], spec: PreprocessSpec) -> np.ndarray:
    """Deterministic model inputs ``(n, H, W, C)`` for validation, calibration and testing."""
    return np.stack([preprocess(im, spec) for im in images]) if images else np.zeros((0, *spec.input_shape))


def class_weights(y: np.ndarray, n_classes: int) -> dict[int, float]:
    """Inverse-frequency weights ``n / (k * n_c)`` (mean weight 1 over the samples)."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    return {c: float(len(y) / (n_classes * counts[c])) if counts[c] else 0.0 for c in range(n_classes)}


class CxrSequence(keras.utils.PyDataset):
    """Batches of preprocessed (optionally augmented) images with one-hot labels.

    Args:
        images: Decoded images.
        y: Class indices.
        spec: Preprocessing spec.
        n_classes: Number of classes.
        batch_size: Images per batch.
        augment: Apply :func:`train.augment.make_augment` (training only).
        shuffle: Reshuffle every epoch.
        seed: Seed of shuffling and augmentation.
        **kwargs: Passed to ``keras.utils.PyDataset`` (workers, use_multiprocessing...).
    """

    def __init__(
        self, images, y, spec, n_classes, *, batch_size=16, augment=False, shuffle=False, seed=0, **kwargs
    ):
        super().__init__(**kwargs)
        self.images, self.y, self.spec = list(images), np.asarray(y), spec
        self.n_classes, self.batch_size = n_classes, batch_size
        self.shuffle = shuffle
        self._rng = np.random.default_rng(seed)
        self._augment = make_augment(self._rng) if augment else None
        self._order = np.arange(len(self.images))
        if shuffle:
            self._rng.shuffle(self._order)

    def __len__(self) -> int:
        return int(np.ceil(len(self.images) / self.batch_size))

    def __getitem__(self, index: int):
        idx = self._order[index * self.batch_size : (index + 1) * self.batch_size]
        x = np.stack([preprocess(self.images[i], self.spec, augment=self._augment) for i in idx])
        y = np.eye(self.n_classes, dtype=np.float32)[self.y[idx]]
        return x, y

    def on_epoch_end(self) -> None:
        if self.shuffle:
            self._rng.shuffle(self._order)
