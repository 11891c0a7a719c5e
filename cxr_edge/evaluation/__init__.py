"""Evaluation: metrics, statistics (intervals, tests), bundle evaluation and reports, the source audit,
leave-one-source-out scoring and selection, golden vectors and the decode gate.

Nothing is imported here: the statistics need scipy and statsmodels, which the runtime commands never
load (``cxr-edge predict`` starts without them)."""
