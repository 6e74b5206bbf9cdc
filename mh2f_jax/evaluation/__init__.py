"""Evaluation of a trained workdir: derain a test split, score it, write the report.

:mod:`.evaluator` (``evaluate``, what ``eval.py`` runs), :mod:`.figures` (rainy |
derained | clean), :mod:`.paper` (the paper's Table 2, printed beside measured rows).
"""
