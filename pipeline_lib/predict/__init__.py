"""Applying a model: dense inference (whole image or sliding window, flip), the logits upsampling policy, the
teacher's logits of a round (``infer``) and the segmentation of new images (``dars predict``)."""
