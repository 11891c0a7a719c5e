"""Keras -> TFLite conversion, parity checks and bundle writing.

Modules: :mod:`cxr_edge.convert.tflite` (variants), :mod:`cxr_edge.convert.gates` (parity with Keras),
:mod:`cxr_edge.convert.build` (runs -> bundle), :mod:`cxr_edge.convert.samples` (the shipped sample images).
``tflite`` and ``build`` need TensorFlow (the ``[train]`` extra); importing this package does not.
"""
