"""The runtime: the LiteRT engine, the segmenter, the pipeline (read -> checks -> segment -> crop ->
classify -> combine -> heat map, timed) and the prediction row writers."""
