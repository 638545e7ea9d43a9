"""PatchCore-style patch scorer: a coreset memory bank of normal patches and anomaly maps.

Each test patch is scored by its distance to the nearest normal patches in the bank; the patch
distances, upsampled to the image and smoothed, form the anomaly map, and the image score is the
map's maximum (or the mean of its hottest pixels). The scorer is an ``nn.Module`` with the bank
as its buffer: PyTorch inference and the traced ONNX graph (``export_onnx.DetectorGraph``) run
the same ``forward``. Eagerly the search goes through ``NearestNeighbourIndex`` (faiss for large
CPU searches, chunked torch otherwise); traced, through ``exact_distances``, the same exact
search in tensor operations only.

With ``positional`` the maps are standardised per position by the mean and spread of good
images' out-of-fold maps there (``PositionStats``, fitted by ``set_positions``): on aligned parts
a region that varies among good parts (a part's ends, an edge) weighs less, a quiet one more.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from simclr_ad.scoring.base import Scorer, check_features
from simclr_ad.scoring.coreset import greedy_coreset
from simclr_ad.scoring.registry import DEFAULT_SCORE_RULE, SCORE_RULES
from simclr_ad.scoring.search import NearestNeighbourIndex, exact_distances

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self is Python 3.11+

logger = logging.getLogger(__name__)

DEFAULT_UPSAMPLING = 8  # score() maps at 8× the feature resolution: a stride-8 feature map
POSITION_POOL = 8  # positional statistics on a grid this many times coarser than the maps
POSITION_FLOOR = 0.5  # a position's spread never below this share of the mean spread


class PatchPrediction(NamedTuple):
    """Image scores (N) and anomaly maps (N×H×W): float32 on the CPU from ``predict``, on the
    features' device from ``forward``."""

    scores: Tensor
    maps: Tensor


class PatchScorer(Scorer):
    """Memory bank of normal patch features; scores patches, maps and images.

    Args:
        coreset_ratio: the share of training patches kept in the bank, in (0, 1]; 1.0 keeps all
            without running the coreset selection.
        k: patch score = mean distance to the k nearest bank patches (all of them if fewer).
        sigma: standard deviation in pixels of the Gaussian smoothing of the maps; 0 disables it.
        score_rule: ``"max"`` of the map or ``"topk_mean"``, the mean of its hottest pixels.
        topk_fraction: the share of pixels averaged by ``"topk_mean"``, in (0, 1].
        seed: seeds the coreset selection.
        positional: standardise the maps per position (``set_positions`` after ``fit``).
    """

    kind: ClassVar[str] = "patch"
    bank: Tensor  # K×C float32

    def __init__(
        self,
        coreset_ratio: float = 0.1,
        k: int = 1,
        sigma: float = 4.0,
        score_rule: str = DEFAULT_SCORE_RULE,
        topk_fraction: float = 0.01,
        seed: int = 0,
        positional: bool = False,
    ) -> None:
        super().__init__()
        _check_arguments(coreset_ratio, k, sigma, score_rule, topk_fraction, seed)
        self.coreset_ratio = float(coreset_ratio)
        self.k = k
        self.sigma = float(sigma)
        self.score_rule = score_rule
        self.topk_fraction = float(topk_fraction)
        self.seed = seed
        self.positional = bool(positional)
        self.register_buffer("bank", torch.empty(0, 0))
        if self.positional:  # the maps' mean and spread per position, pooled (set_positions)
            self.register_buffer("position_mean", torch.empty(0, 0))
            self.register_buffer("position_scale", torch.empty(0, 0))
        self.kept: Tensor | None = None  # after fit: the rows of the fitted patches in the bank
        self._index: tuple[Tensor, NearestNeighbourIndex] | None = None  # (of which bank, index)

    def params(self) -> dict[str, Any]:
        """The hyper-parameters as JSON values."""
        return {
            "coreset_ratio": self.coreset_ratio,
            "k": self.k,
            "sigma": self.sigma,
            "score_rule": self.score_rule,
            "topk_fraction": self.topk_fraction,
            "seed": self.seed,
            "positional": self.positional,
        }

    def fit(self, patches: Tensor) -> Self:
        """Keep ``max(1, round(coreset_ratio · P))`` patches as the memory bank.

        Args:
            patches: P×C patch features of normal training images.

        Returns:
            The scorer itself, fitted.
        """
        check_features(patches, name="patches")
        P = patches.shape[0]
        self.kept = torch.arange(P)
        if self.coreset_ratio < 1.0:
            n = max(1, round(self.coreset_ratio * P))
            self.kept = greedy_coreset(patches, n, seed=self.seed)
            patches = patches[self.kept.to(patches.device)]
        self.bank = patches.detach().float().contiguous()
        self.check_state()
        logger.info("patch memory bank: %d of %d patches", self.bank.shape[0], P)
        return self

    @property
    def is_fitted(self) -> bool:
        """Whether the bank is filled (a positional scorer's maps also need ``set_positions``;
        before it, only ``raw`` ones)."""
        return self.bank.numel() > 0

    def set_positions(self, stats: PositionStats) -> Self:
        """Standardise the maps from now on by ``stats``, from good images' out-of-fold maps
        (a positional scorer is fitted once this is set)."""
        if not self.positional:
            raise ValueError("set_positions needs a scorer made with positional=True")
        self.position_mean, self.position_scale = stats.moments()
        return self

    def forward(
        self,
        features: Tensor,
        image_size: int | tuple[int, int],
        exclude: Tensor | None = None,
        raw: bool = False,
    ) -> PatchPrediction:
        """Anomaly maps and image scores, on the features' device.

        Args:
            features: N×C×h×w patch feature maps, C as in ``fit``.
            image_size: S, the side of square maps, or their (H, W).
            exclude: bank patches not to match, as in ``patch_distances``.
            raw: maps before the positional standardisation (to fit it).

        Returns:
            Scores (N) and maps (N×H×W).
        """
        size = map_size(image_size)
        maps = self.anomaly_maps(features, size, exclude=exclude, raw=raw)
        return PatchPrediction(scores=self._image_scores(maps, size), maps=maps)

    def patch_distances(self, features: Tensor, *, exclude: Tensor | None = None) -> Tensor:
        """Mean distance of every spatial patch to its k nearest bank patches.

        Args:
            features: N×C×h×w patch feature maps, C as in ``fit``.
            exclude: K bools over the bank, true for patches not to match (e.g. the images'
                own, to score them as if they had never been fitted on); not all true.

        Returns:
            N×h×w float32 distances on the features' device.
        """
        if torch.jit.is_tracing():  # the exported graph: the exact search, tensor ops only
            _, C, h, w = features.shape
            queries = features.permute(0, 2, 3, 1).reshape(-1, C)  # (N·h·w)×C
            k = min(self.k, self.bank.shape[0])
            return exact_distances(queries, self.bank, k).mean(dim=1).reshape(-1, h, w)
        index = self._search_index()
        N, C, h, w = _check_feature_maps(features, dim=self.feature_dim)
        queries = features.permute(0, 2, 3, 1).reshape(N * h * w, C)  # (N·h·w)×C
        searched = index.bank.shape[0] - (int(exclude.sum()) if exclude is not None else 0)
        k = min(self.k, searched)
        return index.search(queries, k, exclude=exclude).mean(dim=1).reshape(N, h, w)

    def anomaly_maps(
        self,
        features: Tensor,
        image_size: int | tuple[int, int],
        *,
        exclude: Tensor | None = None,
        raw: bool = False,
    ) -> Tensor:
        """Patch distances upsampled (bilinear) to the image and Gaussian-smoothed; with
        ``positional``, then standardised per position.

        Args:
            features: N×C×h×w patch feature maps.
            image_size: S, the side of a square image, or its (H, W).
            exclude: bank patches not to match, as in ``patch_distances``.
            raw: maps before the positional standardisation (to fit it).

        Returns:
            N×H×W float32 maps on the features' device.
        """
        size = map_size(image_size)
        distances = self.patch_distances(features, exclude=exclude)[:, None]  # N×1×h×w
        maps = F.interpolate(distances, size=size, mode="bilinear", align_corners=False)
        maps = gaussian_blur(maps[:, 0], sigma=self.sigma)
        if not self.positional or raw:
            return maps
        if self.position_mean.numel() == 0:
            raise ValueError("patch scorer: positional maps need set_positions(...) first")
        return standardise(maps, self.position_mean, self.position_scale)

    def image_scores(self, maps: Tensor, rule: str | None = None) -> Tensor:
        """One score per map by ``score_rule``.

        Args:
            maps: N×H×W anomaly maps.
            rule: another of ``SCORE_RULES`` to score by (None: ``score_rule``), to compare
                rules on the same maps.

        Returns:
            N scores on the maps' device.
        """
        if maps.ndim != 3:
            raise ValueError(f"maps must be N×H×W, got shape {tuple(maps.shape)}")
        if rule is not None and rule not in SCORE_RULES:
            raise ValueError(f"rule must be one of {', '.join(SCORE_RULES)}, got {rule!r}")
        return self._image_scores(maps, (int(maps.shape[1]), int(maps.shape[2])), rule)

    def _image_scores(self, maps: Tensor, size: tuple[int, int], rule: str | None = None) -> Tensor:
        """N×H×W maps of (H, W) = ``size`` -> N scores; the pixel count comes from ``size``,
        plain integers, as a traced map's shape is a tensor."""
        pixels = maps.reshape(maps.shape[0], -1)  # N×(H·W)
        if (rule or self.score_rule) == "max":
            return pixels.amax(dim=1)
        n = max(1, round(self.topk_fraction * size[0] * size[1]))
        return pixels.topk(n, dim=1).values.mean(dim=1)

    def predict(
        self,
        features: Tensor,
        image_size: int | tuple[int, int],
        *,
        exclude: Tensor | None = None,
        raw: bool = False,
    ) -> PatchPrediction:
        """Anomaly maps and image scores, as ``forward`` but float32 on the CPU.

        Args:
            features: N×C×h×w patch feature maps.
            image_size: S, the side of square maps, or their (H, W).
            exclude: bank patches not to match, as in ``patch_distances``.
            raw: maps before the positional standardisation (to fit it).

        Returns:
            Scores (N) and maps (N×H×W), float32 on the CPU.
        """
        scores, maps = self(features, image_size, exclude, raw)
        return PatchPrediction(scores=scores.float().cpu(), maps=maps.float().cpu())

    def score(self, features: Tensor, image_size: int | tuple[int, int] | None = None) -> Tensor:
        """Image scores, higher meaning more anomalous.

        Args:
            features: N×C×h×w patch feature maps.
            image_size: S or (H, W), the size of the maps the scores are taken from; by
                default 8·h × 8·w, the image size of a stride-8 feature map (sigma is in
                pixels of that map).

        Returns:
            N float32 scores on the CPU.
        """
        if image_size is None:
            h, w = int(features.shape[-2]), int(features.shape[-1])
            image_size = (DEFAULT_UPSAMPLING * h, DEFAULT_UPSAMPLING * w)
        return self.predict(features, image_size=image_size).scores

    def check_state(self) -> None:
        super().check_state()
        bank = self.bank
        if bank.ndim != 2 or min(bank.shape) < 1:
            raise ValueError(f"patch state: bank must be K×C, got {tuple(bank.shape)}")
        if self.positional and self.position_mean.numel():
            mean, scale = self.position_mean, self.position_scale
            if mean.ndim != 2 or mean.shape != scale.shape or not bool((scale > 0).all()):
                raise ValueError(
                    "patch state: position_mean and position_scale must be h×w, the scale > 0"
                )
        if self.k > bank.shape[0]:
            logger.warning(
                "patch: k=%d exceeds the bank's %d patches; using all", self.k, len(bank)
            )

    def _search_index(self) -> NearestNeighbourIndex:
        """The search over the bank, made again when the bank was replaced or moved."""
        self._require_fitted()
        if self._index is None or self._index[0] is not self.bank:
            self._index = (self.bank, NearestNeighbourIndex(self.bank))
        return self._index[1]


class PositionStats(NamedTuple):
    """Per-position sums of N good anomaly maps, pooled ``POSITION_POOL``-fold (float64):
    their mean and spread standardise the maps. ``without`` takes maps out again, so that a
    good image's out-of-fold score is standardised by statistics it is not part of."""

    total: Tensor  # h×w
    squares: Tensor  # h×w
    n_maps: int

    @classmethod
    def of(cls, maps: Sequence[Tensor]) -> PositionStats:
        """The sums of a sequence of n×H×W maps (one H×W)."""
        pooled = torch.cat([_pooled(m) for m in maps])
        return cls(pooled.sum(0), pooled.square().sum(0), int(pooled.shape[0]))

    def without(self, maps: Sequence[Tensor]) -> PositionStats:
        """These sums less those of ``maps`` (that were among them)."""
        less = PositionStats.of(maps)
        return PositionStats(
            self.total - less.total, self.squares - less.squares, self.n_maps - less.n_maps
        )

    def moments(self) -> tuple[Tensor, Tensor]:
        """float32 h×w mean and spread (standard deviation, at least ``POSITION_FLOOR`` of its
        mean over the positions: a position where every good map agrees is not divided by ~0)."""
        if self.n_maps < 2:
            raise ValueError(f"positional statistics need at least 2 maps, got {self.n_maps}")
        mean = self.total / self.n_maps
        variance = (self.squares - self.n_maps * mean.square()) / (self.n_maps - 1)
        spread = variance.clamp_min(0).sqrt()
        scale = spread.clamp_min(max(POSITION_FLOOR * float(spread.mean()), 1e-12))
        return mean.float(), scale.float()


def standardise(maps: Tensor, mean: Tensor, scale: Tensor) -> Tensor:
    """N×H×W ``maps`` less the h×w ``mean``, over ``scale`` (both upsampled to H×W)."""
    size = (int(maps.shape[-2]), int(maps.shape[-1]))
    grid = torch.stack([mean, scale])[None].to(maps)  # 1×2×h×w
    mean_up, scale_up = F.interpolate(grid, size=size, mode="bilinear", align_corners=False)[0]
    return (maps - mean_up) / scale_up


def _pooled(maps: Tensor) -> Tensor:
    """N×H×W maps -> N×h×w float64 averages over ``POSITION_POOL``² windows (edges: partial)."""
    pooled = F.avg_pool2d(maps.float()[:, None], POSITION_POOL, ceil_mode=True)
    return pooled[:, 0].double()


def map_size(image_size: int | tuple[int, int]) -> tuple[int, int]:
    """(H, W) of the maps from a side S or an (H, W) pair, each an integer >= 1."""
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(size) != 2 or not all(_is_int(v) and v >= 1 for v in size):
        raise ValueError(
            f"image_size must be an integer >= 1 or an (H, W) pair, got {image_size!r}"
        )
    return int(size[0]), int(size[1])


def gaussian_blur(maps: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian smoothing with reflect padding; sigma 0 returns ``maps`` unchanged.

    The kernel radius is ceil(4·sigma), capped at S-1 (reflect padding must be smaller than
    the map) with the kernel renormalised.

    Args:
        maps: N×S×S maps.
        sigma: standard deviation in pixels, >= 0.

    Returns:
        N×S×S smoothed maps.
    """
    if maps.ndim != 3:
        raise ValueError(f"maps must be N×S×S, got shape {tuple(maps.shape)}")
    _, H, W = maps.shape
    radius = min(math.ceil(4 * sigma), H - 1, W - 1)
    if sigma == 0 or radius < 1:
        return maps
    offsets = torch.arange(-radius, radius + 1, dtype=maps.dtype, device=maps.device)
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()  # 2r+1
    x = F.pad(maps[:, None], (radius, radius, 0, 0), mode="reflect")  # N×1×H×(W+2r)
    x = F.conv2d(x, kernel.view(1, 1, 1, -1))
    x = F.pad(x, (0, 0, radius, radius), mode="reflect")  # N×1×(H+2r)×W
    return F.conv2d(x, kernel.view(1, 1, -1, 1))[:, 0]


def _check_feature_maps(features: Tensor, *, dim: int) -> tuple[int, int, int, int]:
    """Validate N×C×h×w float feature maps with C = ``dim``; returns the shape."""
    if not isinstance(features, Tensor) or not features.is_floating_point() or features.ndim != 4:
        raise ValueError(
            f"features must be float N×C×h×w maps, got {getattr(features, 'shape', features)}"
        )
    if features.shape[1] != dim:
        raise ValueError(f"features have C={features.shape[1]} but the bank has C={dim}")
    if not bool(torch.isfinite(features).all()):
        raise ValueError("features contain NaN or inf values")
    N, C, h, w = features.shape
    return N, C, h, w


def _check_arguments(
    coreset_ratio: float, k: int, sigma: float, score_rule: str, topk_fraction: float, seed: int
) -> None:
    """Raise ValueError naming the first out-of-range hyper-parameter."""
    checks = [
        ("coreset_ratio", coreset_ratio, _is_real(coreset_ratio) and 0 < coreset_ratio <= 1),
        ("k", k, _is_int(k) and k >= 1),
        ("sigma", sigma, _is_real(sigma) and math.isfinite(sigma) and sigma >= 0),
        ("score_rule", score_rule, score_rule in SCORE_RULES),
        ("topk_fraction", topk_fraction, _is_real(topk_fraction) and 0 < topk_fraction <= 1),
        ("seed", seed, _is_int(seed)),
    ]
    for name, value, ok in checks:
        if not ok:
            raise ValueError(f"{name} must be {_EXPECTED[name]}, got {value!r}")


_EXPECTED = {
    "coreset_ratio": "a number in (0, 1]",
    "k": "an integer >= 1",
    "sigma": "a number >= 0",
    "score_rule": f"one of {', '.join(SCORE_RULES)}",
    "topk_fraction": "a number in (0, 1]",
    "seed": "an integer",
}


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
