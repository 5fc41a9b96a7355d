"""The DVC pipeline: params.yaml, the stage runner, one module per stage, the report and figures.

``dvc.yaml`` runs each numbered notebook through :mod:`~gadlib.pipeline.stage`; each notebook calls
the ``run`` function of its stage module (``prepare``, ``train_classifier``, ``train_support``,
``attribute``, ``hull_metrics``); the figures stage writes the figures, metrics and report.
"""
