"""The method of the paper, in reading order.

1. :mod:`~gadlib.method.distancing`: Algorithm 1, artificial distancing of the logits;
2. :mod:`~gadlib.method.support`: the support regression models trained on the distanced logits;
3. :mod:`~gadlib.method.fusion`: Algorithm 2, from K + 1 maps to the GAD map (importance,
   binarisation, consistency);
4. :mod:`~gadlib.method.gad`: the ``GAD`` attribution class, with Captum's call shape;
5. :mod:`~gadlib.method.batched`: the exact batched path that explains all K + 1 models at once.
"""
