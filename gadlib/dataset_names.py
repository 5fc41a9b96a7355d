"""The datasets gadlib reads and their class names, without importing torch.

Kept apart from :mod:`gadlib.data` so that validating ``params.yaml`` (:mod:`gadlib.config`) stays
fast: a misspelt class fails in a fraction of a second, before any heavy import or work.
"""

DATASETS = ("fashion_mnist", "dogs_vs_cats", "cub200")

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)

DOGS_VS_CATS_CLASSES = ("cat", "dog")
