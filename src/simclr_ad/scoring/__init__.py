"""Anomaly scorers over feature tensors: ``fit(normal features) -> self``, ``score(x) -> N``.

One scorer per module, each an ``nn.Module`` whose fitted state is its buffers (``base``):
``patch`` (``PatchScorer``: memory bank → anomaly maps and image scores), ``knn``, ``mahalanobis``
and ``cosine`` (global: one vector per image). ``registry`` names them (the single source of the
scorer names, their features and defaults; torch-free), ``factory`` builds them, ``coreset`` and
``search`` serve the patch scorer. Scorers never see models or data loaders, only tensors.

This package module imports nothing, so that the torch-free registry can be read without torch;
import from the modules (``from simclr_ad.scoring.patch import PatchScorer``).
"""
