"""Data sets: the data manifest CSV, patient-level splits, and the shipped samples."""
