"""Applying a model: dense inference (whole image or sliding window, flip), the evaluation loop and the
segmentation metrics it reports."""
