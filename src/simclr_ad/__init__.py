"""simclr-ad: self-supervised anomaly detection for visual inspection."""

import os

# OpenMP worker threads (PyTorch's and faiss's libgomp) spin-wait between parallel regions by
# default. On a machine whose cores are shared with other processes, a spinning thread holds the
# core its descheduled team-mate needs, and each of the ~100 parallel regions of a forward pass
# waits for a scheduler time slice: resnet18 batch-1 inference measured 0.4-1.9 s instead of
# ~80 ms on 2 busy cores. Passive waiting (sleep at once) costs microseconds per region. libgomp
# reads the variable when it is loaded, so this only takes effect when simclr_ad is imported
# before torch (the console script, ``python -m simclr_ad`` and the service always do); an
# explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
