"""Training side of cxr-edge: Keras 3 models, data pipelines and the training loop.

Needs the ``[train]`` extra (Keras 3 with a backend). Depends on :mod:`cxr_edge`; never the reverse.
"""

from cxr_edge.train.config import TrainConfig

__all__ = ["TrainConfig"]
