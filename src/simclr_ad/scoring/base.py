"""What every scorer shares: an ``nn.Module`` whose fitted state is its buffers.

A scorer is built from its hyper-parameters (``params()``, JSON values), learns its buffers in
``fit`` and is rebuilt, fitted, from both: ``Scorer.from_state(scorer.params(),
scorer.state_dict())``. The buffers go into the bundle's safetensors file under their names and
the parameters into its JSON, so nothing is pickled; ``.to(device)`` moves them. A *global*
scorer maps one feature vector per image (N×D) to one score per image, higher meaning more
anomalous.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self is Python 3.11+

logger = logging.getLogger(__name__)


class Scorer(nn.Module):
    """Hyper-parameters and fitted buffers.

    Subclasses register their buffers empty in ``__init__``, the first one's last dimension
    being the feature dimension D (C for patch features) that inputs must match. Loading a
    state takes the saved shapes (a bank of K rows is data, not architecture).
    """

    kind: ClassVar[str]

    def __init__(self) -> None:
        super().__init__()
        self.register_load_state_dict_pre_hook(_take_saved_shapes)

    @abstractmethod
    def params(self) -> dict[str, Any]:
        """The hyper-parameters as JSON values; ``type(self)(**params())`` rebuilds the scorer."""

    @property
    def is_fitted(self) -> bool:
        """Whether ``fit`` or ``load_state_dict`` has filled the buffers."""
        return all(buffer.numel() > 0 for buffer in self.buffers())

    @property
    def feature_dim(self) -> int:
        """D, the feature dimension the scorer was fitted on."""
        self._require_fitted()
        return int(next(self.buffers()).shape[-1])

    @classmethod
    def from_state(cls, params: Mapping[str, Any], state: Mapping[str, Tensor]) -> Self:
        """Rebuild a fitted scorer from ``params()`` and ``state_dict()`` of another one.

        Raises:
            ValueError: when names are missing or unexpected, or the tensors are not a fitted
                state (non-finite, or shapes that do not fit together).
        """
        scorer = cls(**params)
        try:
            scorer.load_state_dict(state)
        except (RuntimeError, TypeError) as exc:
            raise ValueError(f"{cls.__name__} state: {exc}") from None
        scorer.check_state()
        return scorer

    def check_state(self) -> None:
        """Raise ValueError when the buffers are not fitted tensors (extend for their shapes)."""
        for name, tensor in self.named_buffers():
            if not tensor.is_floating_point() or not bool(torch.isfinite(tensor).all()):
                raise ValueError(f"{type(self).__name__} state: {name!r} is not finite floats")

    def _require_fitted(self) -> None:
        if not self.is_fitted:
            raise RuntimeError(
                f"{type(self).__name__} is not fitted: call fit(...) or load a fitted state "
                "with load_state_dict(...) / from_state(...) first"
            )


def _take_saved_shapes(module: nn.Module, state: Mapping[str, Any], prefix: str, *_: Any) -> None:
    """``load_state_dict`` pre-hook: resize each persistent buffer to its saved tensor, so that
    loading copies values of any fitted shape (missing and unexpected names still raise)."""
    for name, buffer in module.named_buffers(recurse=False):
        saved = state.get(prefix + name)
        if isinstance(saved, Tensor) and buffer is not None:
            setattr(module, name, torch.empty_like(saved, device=buffer.device))


class GlobalScorer(Scorer):
    """A scorer of one feature vector per image: ``fit(N×D) -> self``, ``score(M×D) -> M``.

    Subclasses implement ``_fit`` (sets the buffers) and ``forward`` (M×D validated features
    on the buffers' device -> M scores, any float dtype); this class validates inputs and
    returns float32 CPU scores.
    """

    min_fit_rows: ClassVar[int] = 1

    def fit(self, features: Tensor) -> Self:
        """Learn what normal looks like from training features.

        Args:
            features: N×D features of normal training images.

        Returns:
            The scorer itself, fitted.
        """
        x = check_features(features, min_rows=self.min_fit_rows)
        self._fit(x)
        self.check_state()
        logger.debug("fitted %s on %d×%d features", type(self).__name__, *x.shape)
        return self

    def score(self, features: Tensor) -> Tensor:
        """Anomaly scores, higher meaning more anomalous.

        Args:
            features: M×D features, D as in ``fit``.

        Returns:
            M float32 scores on the CPU.
        """
        self._require_fitted()
        x = check_features(features, dim=self.feature_dim)
        device = next(self.buffers()).device
        return self(x.to(device)).to(device="cpu", dtype=torch.float32)

    @abstractmethod
    def _fit(self, features: Tensor) -> None:
        """Set the buffers from N×D validated features."""


def check_features(
    features: Tensor, *, dim: int | None = None, min_rows: int = 1, name: str = "features"
) -> Tensor:
    """Validate an N×D floating-point matrix of finite values.

    Args:
        features: the N×D tensor to check.
        dim: the required D, or None for any.
        min_rows: the least N accepted.
        name: what to call the tensor in messages.

    Returns:
        ``features`` itself.

    Raises:
        ValueError: on a wrong type, rank, dimension, row count or a NaN/inf value.
    """
    if not isinstance(features, Tensor) or not features.is_floating_point():
        raise ValueError(f"{name} must be a floating-point torch.Tensor, got {_describe(features)}")
    if features.ndim != 2:
        raise ValueError(f"{name} must be N×D (2-D), got shape {tuple(features.shape)}")
    rows, columns = features.shape
    if dim is not None and columns != dim:
        raise ValueError(f"{name} have D={columns} but the scorer was fitted on D={dim}")
    if rows < min_rows or columns == 0:
        raise ValueError(
            f"{name} must have at least {min_rows} row(s) and D >= 1, got {rows}×{columns}"
        )
    if not bool(torch.isfinite(features).all()):
        raise ValueError(f"{name} contain NaN or inf values")
    return features


def _describe(value: object) -> str:
    if isinstance(value, Tensor):
        return f"a {value.dtype} tensor"
    return type(value).__name__
