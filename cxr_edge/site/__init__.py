"""A new hospital's tools: local validation, site calibration with a few labelled images, drift monitoring.

The layer above the node and batch (it reads their records) and below the CLI (``cxr-edge site``):
:mod:`~cxr_edge.site.labels` (the site's ``LABELS.csv``), :mod:`~cxr_edge.site.observe` (one pass of
the bundle over them), :mod:`~cxr_edge.site.metrics` and :mod:`~cxr_edge.site.validate` (the study),
:mod:`~cxr_edge.site.fit` and :mod:`~cxr_edge.site.calibrate` (fitting, cross-validation, refusal),
:mod:`~cxr_edge.site.calibrated` (the new bundle), :mod:`~cxr_edge.site.monitor` (drift),
:mod:`~cxr_edge.site.report` (Markdown and plots). What every runtime applies is
:mod:`cxr_edge.ops.site`. Nothing is imported here: the statistics need scipy and statsmodels.
"""
