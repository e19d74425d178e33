"""Scoring a model on the val split: the evaluation loop, the segmentation metrics (pure numpy) and the
evaluate step of a round."""
