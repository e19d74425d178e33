"""The prepare step: the dataset that ``data.dataset`` names, split and described in one prepared directory."""

from __future__ import annotations

from pathlib import Path

from pipeline_lib.atomic import atomic_path
from pipeline_lib.settings import DataSettings


def prepare_dataset(settings: DataSettings, out: Path) -> None:
    """Write the prepared directory ``out`` atomically (it appears whole, or the old one stays)."""
    with atomic_path(out) as tmp:
        if settings.dataset == "synthetic":
            from pipeline_lib.data.synthetic.dataset import prepare_synthetic

            prepare_synthetic(tmp, settings.synthetic,
                              settings.synthetic.labeled_count(settings.labeled_fraction, settings.labeled_count))
        elif settings.dataset == "cityscapes":
            from pipeline_lib.data.cityscapes import prepare_cityscapes

            prepare_cityscapes(tmp, settings.root, settings.labeled_fraction, settings.split_seed,
                               settings.labeled_list, settings.unlabeled_list, labeled_count=settings.labeled_count)
        elif settings.dataset == "camvid":
            from pipeline_lib.data.camvid import prepare_camvid

            prepare_camvid(tmp, settings.root, settings.labeled_fraction, settings.labeled_count, settings.split_seed,
                           settings.labeled_list, settings.unlabeled_list)
        elif settings.dataset == "voc":
            from pipeline_lib.data.voc import prepare_voc

            prepare_voc(tmp, settings.root, settings.labeled_fraction, settings.labeled_count, settings.split_seed,
                        settings.labeled_list, settings.unlabeled_list)
        else:
            from pipeline_lib.data.folder import prepare_folder

            prepare_folder(tmp, settings.root, settings.labeled_fraction, settings.val_fraction,
                           settings.split_seed, labeled_count=settings.labeled_count)
