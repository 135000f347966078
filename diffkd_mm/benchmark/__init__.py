"""DiffKD's training cost against its peers: the variants, how they are timed, the report.

The command line is ``tools/analysis_tools/benchmark_train_step.py``.
"""
