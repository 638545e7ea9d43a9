"""The reference write-up's augmentation list as torchvision transforms on PIL images.

Not used for training: the project's batched ``seed`` preset (``data/augment.py``) reproduces it
on tensors. This is the yardstick the tests (statistical parity) and ``benchmarks/speed.py``
(speed ratio) compare that preset against.
"""

from __future__ import annotations

import torchvision.transforms as T

from simclr_ad.preprocessing import IMAGENET_MEAN, IMAGENET_STD


def writeup_transform(size: int, *, resize: bool = True) -> T.Compose:
    """The write-up's list producing one ``size`` px view; ``resize`` adds its Resize(size + 32)."""
    steps: list[object] = [T.Resize(size + 32)] if resize else []
    steps += [
        T.RandomResizedCrop(size, scale=(0.3, 1.0)),
        T.RandomHorizontalFlip(),
        T.RandomVerticalFlip(p=0.1),
        T.RandomRotation(15),
        T.RandomApply([T.ColorJitter(0.8, 0.8, 0.8, 0.2)], p=0.8),
        T.RandomGrayscale(p=0.2),
        T.RandomApply([T.GaussianBlur(3, sigma=(0.1, 2.0))], p=0.3),
        T.ToTensor(),
        T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        T.RandomErasing(p=0.1, scale=(0.02, 0.08), ratio=(0.3, 3.3), value=0),
    ]
    return T.Compose(steps)
