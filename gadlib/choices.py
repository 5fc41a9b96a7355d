"""Every set of allowed choices, in one module that imports nothing heavy: the validation of
``params.yaml`` (:mod:`gadlib.project.params`, fast without torch) and the library take them from here,
so the two never disagree.
"""

DATASETS = ("fashion_mnist", "dogs_vs_cats", "cub200")
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
DOGS_VS_CATS_CLASSES = ("cat", "dog")
CUB200_CLASS_COUNT = 200

ARCHITECTURES = ("resnet18", "vgg16", "small_cnn")
LOSSES = ("cross_entropy", "mse")
SCHEDULES = ("constant", "one_cycle")  # learning rate over the training run

# Algorithm 1 and the support models
STRATEGIES = ("pair", "one_vs_all", "split")
INIT_MODES = ("chained", "original")

# Algorithm 2: attribution methods and the fusion of their maps
METHODS = ("IntegratedGradients", "Saliency", "InputXGradient", "GuidedBackprop", "SmoothGrad")
BATCHED_METHODS = ("IntegratedGradients", "Saliency", "InputXGradient")  # gadlib.method.batched
IMPORTANCE_MODES = ("abs", "positive")
THRESHOLD_MODES = ("quantile", "fraction_of_max")

# Evaluation: occlusion
FILLS = ("black", "mean", "blur")
SCORE_MODES = ("logit", "margin")
