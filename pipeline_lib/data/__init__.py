"""Datasets: the prepared-dataset format every stage reads, class sets, splits, augmentation, and one
preparer per dataset kind (the embedded synthetic streets, Cityscapes, Pascal VOC, a folder of images)."""
