"""Datasets: the prepared-dataset format every stage reads, class sets, splits, and one preparer per dataset
kind (the embedded synthetic streets, Cityscapes, Pascal VOC, a folder of images). Only ``prepare`` runs the
preparers; the other stages read the prepared format (``prepared.py``) and the class sets (``classes.py``)."""
