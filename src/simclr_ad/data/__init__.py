"""Dataset readers (MVTec AD layout), the synthetic generator and batched augmentations."""
