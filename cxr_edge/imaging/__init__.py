"""Imaging: reading chest X-rays (PNG, JPEG, DICOM) into one float32 image in [0, 1].

:mod:`~cxr_edge.imaging.reader` (``read_image``, ``decode_image``), :mod:`~cxr_edge.imaging.dicom` (DICOM
parsing), :mod:`~cxr_edge.imaging.pixels` (per-syntax pixel decoding), :mod:`~cxr_edge.imaging.codestream`
(what compressed frames declare), :mod:`~cxr_edge.imaging.intensity` (stored values to intensities),
:mod:`~cxr_edge.imaging.synth` (synthetic DICOMs for tests and benchmarks). No patient identifier ever
leaves this package.
"""

from cxr_edge.imaging.reader import ImageInfo, ReadOptions, decode_image, read_image

__all__ = ["ImageInfo", "ReadOptions", "decode_image", "read_image"]
