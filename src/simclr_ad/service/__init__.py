"""The HTTP inspection service: a FastAPI app around a Predictor (nothing loaded at import)."""
