"""Segmentation models (PSPNet, DeepLabv2, MobileNetV3 heads), backbone weights from local files, and the
checkpoint format that carries a trained model between stages."""
