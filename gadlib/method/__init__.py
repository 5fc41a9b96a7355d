"""The method of the paper (docs/method.md): ``distancing`` (Algorithm 1), ``support`` (the support models),
``fusion`` (Algorithm 2), ``gad`` (the ``GAD`` class) and ``batched`` (all K + 1 models at once)."""
