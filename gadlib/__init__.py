"""gadlib: Gradient Artificial Distancing (GAD) for gradient-based explanations of CNNs.

GAD (arXiv 2401.14434) trains support regression models whose logits push two classes further
apart, explains the original and every support model, and keeps only the pixels all of them agree
on. The evaluation reads explanations as regions: convex hulls of groups of important pixels.
"""

__version__ = "0.1.0"
