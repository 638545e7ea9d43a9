"""simclr-ad: self-supervised anomaly detection for visual inspection."""

import os

# OpenMP worker threads (PyTorch's and faiss's libgomp) spin-wait between parallel regions by
# default: on cores shared with other processes a spinning thread holds the core its descheduled
# team-mate needs, and every parallel region of a forward pass waits for a time slice
# (docs/research-log.md, 2026-11-28). libgomp reads the variable when it is loaded, so this only
# takes effect when simclr_ad is imported before torch (the console script, ``python -m
# simclr_ad`` and the service always do); an explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
