"""Keras -> TFLite conversion, parity checks and bundle writing.

Modules: :mod:`convert.tflite` (variants), :mod:`convert.gates` (parity with Keras),
:mod:`convert.build` (runs -> bundle), :mod:`convert.samples` (the shipped sample images).
``tflite`` and ``build`` need TensorFlow (the ``[train]`` extra); importing this package does not.
"""
