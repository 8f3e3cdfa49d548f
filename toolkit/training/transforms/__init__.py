"""The augmentation transforms of docs/method.md 1.2, written for speed (torch grid_sample, separable filters).

Each transform acts on one sample (no batch axis: ``data`` (c, *spatial) float32, ``seg`` (c, *spatial)
integer) and draws its random numbers from an explicit ``numpy.random.Generator``: no global state,
so a sample is a pure function of its generator's seed. The pipeline that composes them, with the
probabilities and ranges of docs/method.md 1.2, is ``toolkit.training.augment``.
"""
