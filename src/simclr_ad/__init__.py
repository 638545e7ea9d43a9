"""simclr-ad: self-supervised anomaly detection for visual inspection."""

__version__ = "0.1.0"
