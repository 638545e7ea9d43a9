"""The write-up's projection head: an MLP with BatchNorm, ReLU and Dropout."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn


class ProjectionHead(nn.Sequential):
    """Maps pooled encoder features ``h`` to the contrastive embedding ``z``.

    Default (the write-up): in→512→256→128 with BatchNorm, ReLU and Dropout 0.1 and 0.05 after
    each hidden layer; the input width comes from the backbone.

    Args:
        in_dim: width of ``h``.
        hidden: widths of the hidden layers.
        out_dim: width of ``z``.
        dropout: one dropout probability per hidden layer.
    """

    def __init__(
        self,
        in_dim: int,
        hidden: Sequence[int] = (512, 256),
        out_dim: int = 128,
        dropout: Sequence[float] = (0.1, 0.05),
    ) -> None:
        if len(dropout) != len(hidden):
            raise ValueError(
                f"need one dropout per hidden layer, got {len(dropout)} for {len(hidden)}"
            )
        layers: list[nn.Module] = []
        width = in_dim
        for size, p in zip(hidden, dropout, strict=True):
            layers += [
                nn.Linear(width, size),
                nn.BatchNorm1d(size),
                nn.ReLU(inplace=True),
                nn.Dropout(p),
            ]
            width = size
        layers.append(nn.Linear(width, out_dim))
        super().__init__(*layers)
        self.in_dim = in_dim
        self.out_dim = out_dim

    def forward(self, h: Tensor) -> Tensor:
        """B×in_dim -> B×out_dim."""
        return super().forward(h)
