"""Applying a model: dense inference (whole image or sliding window, flip), the logits upsampling policy and the
segmentation of new images (``dars predict``)."""
