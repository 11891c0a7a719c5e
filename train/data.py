"""From manifest records to Keras batches, through the one preprocessing implementation."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import keras
import numpy as np
from tqdm import tqdm

from cxr_edge.dataset.manifest import Record
from cxr_edge.imaging.reader import read_image
from cxr_edge.ops.preprocess import CropBox, PreprocessSpec, preprocess
from cxr_edge.runtime.segmenter import CropTable
from cxr_edge.train.augment import make_augment
from cxr_edge.train.config import TrainConfig


@dataclass(frozen=True)
class Inputs:
    """Decoded images and, for lung-crop models, their crop boxes (None = the spec's border crop)."""

    images: list[np.ndarray]
    boxes: list[CropBox | None]

    def __len__(self) -> int:
        return len(self.images)

    def take(self, indices: Sequence[int]) -> Inputs:
        """The images (and boxes) at ``indices``, without decoding anything again."""
        return Inputs([self.images[i] for i in indices], [self.boxes[i] for i in indices])


def crop_table(config: TrainConfig) -> CropTable | None:
    """The config's crop table (``crops``), or None for border-crop models."""
    return CropTable.read(config.crops) if config.crops else None


def load_images(
    records: Sequence[Record], *, crops: CropTable | None = None, desc: str = "decode", progress: bool = True
) -> Inputs:
    """Decodes every record's image once (float32 in [0, 1]) so epochs do not re-read files.

    The kit's images are at most 512 px, so the whole kit fits in about 1 GB; a larger data set
    would want a disk cache instead.

    Args:
        crops: Lung-crop boxes by manifest path (from ``cxr-edge segment --manifest``); every record
            must have one.
    """
    images = [read_image(r.file)[0] for r in tqdm(records, desc=desc, disable=not progress, leave=False)]
    boxes = [crops.box(r.path) if crops else None for r in records]
    return Inputs(images, boxes)


def label_indices(records: Sequence[Record], labels: Sequence[str]) -> np.ndarray:
    """Class index of each record in the task's label order."""
    index = {label: i for i, label in enumerate(labels)}
    return np.array([index[r.label] for r in records], dtype=np.int64)


def preprocess_all(inputs: Inputs, spec: PreprocessSpec) -> np.ndarray:
    """Deterministic model inputs ``(n, H, W, C)`` for validation, calibration and testing."""
    if not len(inputs):
        return np.zeros((0, *spec.input_shape), dtype=np.float32)
    return np.stack(
        [preprocess(im, spec, crop_box=box) for im, box in zip(inputs.images, inputs.boxes, strict=True)]
    )


def balanced_weights(y: np.ndarray, sources: Sequence[str]) -> np.ndarray:
    """Sampling probabilities that give every class, and within it every source, an equal share.

    In the kit a source identifies the label (bacterial pneumonia only from Kermany, covid only from
    Hannover and figure collections), so a model sees more of some (source, class) cells than others
    and can score well by recognising the large cells' hospital. Drawing each class with probability
    ``1/K`` and, within a class, each of its sources with the same probability removes the incentive
    to learn which hospital dominates a class.

    Returns:
        ``(n,)`` probabilities summing to 1.
    """
    y = np.asarray(y)
    sources = np.asarray(sources)
    classes = np.unique(y)
    w = np.zeros(len(y), dtype=np.float64)
    for c in classes:
        in_class = y == c
        cell_sources = np.unique(sources[in_class])
        for s in cell_sources:
            cell = in_class & (sources == s)
            w[cell] = 1.0 / (len(classes) * len(cell_sources) * cell.sum())
    return w / w.sum()


def class_weights(y: np.ndarray, n_classes: int) -> dict[int, float]:
    """Inverse-frequency weights ``n / (k * n_c)`` (mean weight 1 over the samples)."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    return {c: float(len(y) / (n_classes * counts[c])) if counts[c] else 0.0 for c in range(n_classes)}


class CxrSequence(keras.utils.PyDataset):
    """Batches of preprocessed (optionally augmented) images with one-hot labels.

    Args:
        inputs: Decoded images and their crop boxes.
        y: Class indices.
        spec: Preprocessing spec.
        n_classes: Number of classes.
        batch_size: Images per batch.
        augment: Apply :func:`cxr_edge.train.augment.make_augment` (training only).
        shuffle: Reshuffle every epoch.
        seed: Seed of shuffling and augmentation.
        augment_strength: One of :data:`cxr_edge.train.augment.STRENGTHS`.
        sample_weights: Per-image sampling probabilities (:func:`balanced_weights`): every epoch
            then draws ``len(inputs)`` images with replacement instead of a permutation.
        extra_targets: Further per-image targets ``{output name: (n, d) array}`` (e.g. the source
            adversary's); batches then yield a dict of targets keyed by output name.
        **kwargs: Passed to ``keras.utils.PyDataset`` (workers, use_multiprocessing...).
    """

    def __init__(
        self,
        inputs,
        y,
        spec,
        n_classes,
        *,
        batch_size=16,
        augment=False,
        shuffle=False,
        seed=0,
        augment_strength="mild",
        sample_weights=None,
        extra_targets=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.inputs, self.y, self.spec = inputs, np.asarray(y), spec
        self.n_classes, self.batch_size = n_classes, batch_size
        self.shuffle = shuffle
        self._rng = np.random.default_rng(seed)
        self._augment = make_augment(self._rng, augment_strength) if augment else None
        self._p = None if sample_weights is None else np.asarray(sample_weights, dtype=np.float64)
        self._extra = dict(extra_targets or {})
        self._order = np.arange(len(inputs))
        self._reorder()

    def _reorder(self) -> None:
        if self._p is not None:
            self._order = self._rng.choice(len(self.inputs), size=len(self.inputs), replace=True, p=self._p)
        elif self.shuffle:
            self._rng.shuffle(self._order)

    def __len__(self) -> int:
        return int(np.ceil(len(self.inputs) / self.batch_size))

    def __getitem__(self, index: int):
        idx = self._order[index * self.batch_size : (index + 1) * self.batch_size]
        images, boxes = self.inputs.images, self.inputs.boxes
        x = np.stack(
            [preprocess(images[i], self.spec, crop_box=boxes[i], augment=self._augment) for i in idx]
        )
        y = np.eye(self.n_classes, dtype=np.float32)[self.y[idx]]
        if self._extra:
            return x, {"probs": y, **{name: t[idx] for name, t in self._extra.items()}}
        return x, y

    def on_epoch_end(self) -> None:
        self._reorder()


@dataclass(frozen=True)
class TrainingData:
    """What fitting a classifier needs, decoded once.

    Attributes:
        train_inputs: Decoded training images (e.g. for calibration subsets).
        train: Shuffled, augmented training batches.
        y_train: Training class indices.
        x_val: Preprocessed validation images.
        y_val: Validation class indices.
    """

    train_inputs: Inputs
    train: CxrSequence
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray


def training_data(
    config: TrainConfig,
    train: Sequence[Record],
    val: Sequence[Record],
    *,
    progress: bool = True,
    extra_targets: Callable[[TrainConfig, Sequence[Record]], dict[str, np.ndarray]] | None = None,
) -> TrainingData:
    """Decodes the training and validation parts once and builds the training sequence of ``config``.

    Args:
        extra_targets: Makes further per-image training targets from the records (the source
            adversary's, :mod:`cxr_edge.train.adversary`).
    """
    crops = crop_table(config)
    train_inputs = load_images(train, crops=crops, desc="decode train", progress=progress)
    y_train = label_indices(train, config.labels)
    sources = [r.source for r in train]
    sequence = CxrSequence(
        train_inputs,
        y_train,
        config.preprocess,
        len(config.labels),
        batch_size=config.batch_size,
        augment=config.augment,
        augment_strength=config.augment_strength,
        shuffle=True,
        seed=config.seed,
        sample_weights=balanced_weights(y_train, sources) if config.sampling == "balanced" else None,
        extra_targets=extra_targets(config, train) if extra_targets is not None else None,
    )
    x_val = preprocess_all(
        load_images(val, crops=crops, desc="decode val", progress=progress), config.preprocess
    )
    return TrainingData(train_inputs, sequence, y_train, x_val, label_indices(val, config.labels))
