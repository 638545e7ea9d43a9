"""Backbone factory (timm), projection head and the SimCLR model."""
