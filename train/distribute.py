"""Training across devices: Keras 3's ``DataParallel`` distribution (JAX backend) or one device.

Data-parallel training replicates every variable on each device of a 1-D mesh, splits each batch
along its first axis across the devices, and all-reduces the gradients, so every replica applies the
same update. The same config therefore trains the same model as on one device, up to float32
rounding (the all-reduce sums the per-device partial gradients in a different order).

Keras shards a batch with ``jax.make_array_from_process_local_data``, which needs every batch, the
last partial one included, to split evenly across the devices. :class:`DevicePlan` keeps to that:
it trims the training batches and the in-fit validation arrays to multiples of the device count
(at most ``devices - 1`` images each), and the run's final validation metrics are computed on one
device on the whole validation part.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import keras

from cxr_edge.errors import SpecError

Distribute = Literal["none", "data-parallel"]
#: The ``--distribute`` choices, in the order the CLI shows them.
CHOICES: tuple[str, ...] = ("none", "data-parallel")


@dataclass(frozen=True)
class DevicePlan:
    """Where a run trains: one device (``none``) or data-parallel over ``devices`` devices.

    Attributes:
        mode: ``none`` or ``data-parallel``.
        devices: Number of devices the batch is split across (1 for ``none``).
        distribution: The Keras distribution to make current while building and fitting the model
            (None for ``none``).
    """

    mode: Distribute
    devices: int
    distribution: keras.distribution.Distribution | None = None

    @contextlib.contextmanager
    def scope(self) -> Iterator[None]:
        """Makes the distribution current; on leaving, the previous one is restored (nothing leaks)."""
        if self.distribution is None:
            yield
            return
        with self.distribution.scope():
            yield

    def usable(self, n: int) -> int:
        """How many of ``n`` examples a distributed step can take: ``n`` rounded down to the devices."""
        return n - n % self.devices

    def batch_size(self, preferred: int) -> int:
        """``preferred`` rounded up to a multiple of the device count (for predict and validation)."""
        return -(-preferred // self.devices) * self.devices

    def trim(self, data: Any) -> Any:
        """Arrays (or a dict/tuple of them) cut to :meth:`usable` rows; unchanged on one device."""
        if self.devices == 1:
            return data
        if isinstance(data, dict):
            return {k: self.trim(v) for k, v in data.items()}
        if isinstance(data, tuple | list):
            return type(data)(self.trim(v) for v in data)
        return data[: self.usable(len(data))]

    def batches(self, sequence: keras.utils.PyDataset, n: int, batch_size: int) -> keras.utils.PyDataset:
        """The training batches, each cut to a multiple of the device count.

        Args:
            sequence: Batches of ``batch_size`` examples (the last one possibly smaller).
            n: Examples per epoch.
            batch_size: The sequence's batch size (a multiple of the device count).

        Returns:
            ``sequence`` itself on one device, otherwise a wrapper that drops the last batch's
            ``(n % batch_size) % devices`` trailing examples (all of it if fewer than the devices).
        """
        if self.devices == 1:
            return sequence
        return _DivisibleBatches(sequence, self, steps=len(sequence) - int(0 < n % batch_size < self.devices))

    def metadata(self, n_train: int, n_val: int, batch_size: int) -> dict[str, Any]:
        """What run.json records beside ``keras_backend``.

        Args:
            n_train: Training images per epoch.
            n_val: Validation images.
            batch_size: Training batch size.

        Returns:
            ``distribute``, ``devices`` and ``left_out_for_devices``: the training images per epoch
            and the validation images that the even split across devices kept out of fitting (0 on
            one device).
        """
        return {
            "distribute": self.mode,
            "devices": self.devices,
            "left_out_for_devices": {
                "train_per_epoch": (n_train % batch_size) % self.devices,
                "val": n_val - self.usable(n_val),
            },
        }


class _DivisibleBatches(keras.utils.PyDataset):
    """Forwards a PyDataset's batches cut by :meth:`DevicePlan.trim` (the sequence keeps its shuffling)."""

    def __init__(self, sequence: keras.utils.PyDataset, plan: DevicePlan, steps: int):
        super().__init__()
        self.sequence, self.plan, self.steps = sequence, plan, steps

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, index: int):
        return self.plan.trim(self.sequence[index])

    def on_epoch_end(self) -> None:
        self.sequence.on_epoch_end()


def plan_devices(mode: Distribute, batch_size: int) -> DevicePlan:
    """Checks that ``mode`` can run here and returns its plan.

    Args:
        mode: ``none`` or ``data-parallel``.
        batch_size: The config's batch size (split evenly across the devices).

    Returns:
        The device plan (for ``data-parallel``: a ``keras.distribution.DataParallel`` over every
        device ``keras.distribution.list_devices()`` lists; one device is allowed).

    Raises:
        SpecError: An unknown mode, a backend other than JAX for ``data-parallel``, or a batch size
            that the device count does not divide.
    """
    if mode not in CHOICES:
        raise SpecError("unknown distribution", expected=f"one of {list(CHOICES)}", received=repr(mode))
    if mode == "none":
        return DevicePlan("none", 1)
    backend = keras.backend.backend()
    if backend != "jax":
        # Keras 3's distribution API is implemented for JAX only; TensorFlow would need tf.distribute.
        raise SpecError(
            "data-parallel training needs the JAX backend",
            expected="KERAS_BACKEND=jax",
            received=backend,
        )
    devices = keras.distribution.list_devices()
    if batch_size % len(devices):
        raise SpecError(
            "the batch size must split evenly across the devices",
            expected=f"batch_size divisible by {len(devices)} ({', '.join(devices)})",
            received=f"batch_size={batch_size}",
        )
    distribution = keras.distribution.DataParallel(devices=list(devices))
    return DevicePlan("data-parallel", len(devices), distribution)
