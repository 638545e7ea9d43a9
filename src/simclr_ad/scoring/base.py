"""What every scorer shares: hyper-parameters as JSON, fitted state as named tensors.

A scorer is built from its hyper-parameters (``params()``), learns tensors in ``fit`` and can be
rebuilt, fitted, from both: ``Scorer.from_state(scorer.params(), scorer.state_dict())``. The
tensors go into the bundle's safetensors file and the parameters into its JSON, so nothing is
pickled. A *global* scorer maps one feature vector per image (N×D) to one score per image,
higher meaning more anomalous.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self is Python 3.11+

logger = logging.getLogger(__name__)


class Scorer(ABC):
    """Hyper-parameters, fitted tensors and their round trip.

    Subclasses name their tensors in ``state_names``; the first one's last dimension is the
    feature dimension D (C for patch features) that inputs must match.
    """

    kind: ClassVar[str]
    state_names: ClassVar[tuple[str, ...]]

    def __init__(self) -> None:
        self._state: dict[str, Tensor] = {}

    @abstractmethod
    def params(self) -> dict[str, Any]:
        """The hyper-parameters as JSON values; ``type(self)(**params())`` rebuilds the scorer."""

    @property
    def is_fitted(self) -> bool:
        """Whether ``fit`` or ``load_state_dict`` has run."""
        return bool(self._state)

    @property
    def feature_dim(self) -> int:
        """D, the feature dimension the scorer was fitted on."""
        self._require_fitted()
        return int(self._state[self.state_names[0]].shape[-1])

    def state_dict(self) -> dict[str, Tensor]:
        """The fitted tensors by name (the scorer's own tensors, not copies)."""
        self._require_fitted()
        return dict(self._state)

    def load_state_dict(self, state: Mapping[str, Tensor]) -> None:
        """Take fitted tensors saved by ``state_dict``; the scorer becomes fitted.

        Raises:
            ValueError: when names are missing or unexpected, or shapes do not fit together.
        """
        missing = sorted(set(self.state_names) - set(state))
        unexpected = sorted(set(state) - set(self.state_names))
        if missing or unexpected:
            raise ValueError(
                f"{type(self).__name__} state: missing {missing or 'nothing'}, "
                f"unexpected {unexpected or 'nothing'} (expected {list(self.state_names)})"
            )
        if not all(isinstance(state[name], Tensor) for name in self.state_names):
            raise ValueError(f"{type(self).__name__} state: values must be tensors")
        tensors = {name: state[name].detach() for name in self.state_names}
        self._check_state(tensors)
        self._set_state(tensors)

    @classmethod
    def from_state(cls, params: Mapping[str, Any], state: Mapping[str, Tensor]) -> Self:
        """Rebuild a fitted scorer from ``params()`` and ``state_dict()`` of another one."""
        scorer = cls(**params)
        scorer.load_state_dict(state)
        return scorer

    def to(self, device: torch.device | str) -> Self:
        """Move the fitted tensors to ``device`` (the scorer then computes there)."""
        self._require_fitted()
        self._set_state({name: t.to(device) for name, t in self._state.items()})
        return self

    def _check_state(self, state: dict[str, Tensor]) -> None:
        """Raise ValueError when ``state`` is not fitted tensors (extend for their shapes)."""
        for name, tensor in state.items():
            if not tensor.is_floating_point() or not bool(torch.isfinite(tensor).all()):
                raise ValueError(f"{type(self).__name__} state: {name!r} is not finite floats")

    def _set_state(self, state: dict[str, Tensor]) -> None:
        """Install fitted tensors; override to derive more (e.g. a search index) from them."""
        self._state = state

    def _require_fitted(self) -> None:
        if not self._state:
            raise RuntimeError(
                f"{type(self).__name__} is not fitted: call fit(...) or load a fitted state "
                "with load_state_dict(...) / from_state(...) first"
            )


class GlobalScorer(Scorer):
    """A scorer of one feature vector per image: ``fit(N×D) -> self``, ``score(M×D) -> M``.

    Subclasses implement ``_fit`` (returns the state tensors) and ``_score`` (any float dtype,
    on the state's device); this class validates inputs and returns float32 CPU scores.
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
        self._set_state(self._fit(x))
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
        device = self._state[self.state_names[0]].device
        return self._score(x.to(device)).to(device="cpu", dtype=torch.float32)

    @abstractmethod
    def _fit(self, features: Tensor) -> dict[str, Tensor]:
        """The state tensors learnt from N×D validated features."""

    @abstractmethod
    def _score(self, features: Tensor) -> Tensor:
        """M scores for M×D validated features already on the state's device."""


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
