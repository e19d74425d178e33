"""prepare: write the prepared dataset (split lists, class metadata, labelled class distribution)."""

from __future__ import annotations

from pathlib import Path

import typer

from pipeline_lib.atomic import atomic_path
from pipeline_lib.errors import UserError
from pipeline_lib.params import Params, fraction, one_of, open_fraction, positive

from . import run_standalone

DATASETS = ("synthetic", "cityscapes", "voc", "folder")


def prepare(
    params: Path = typer.Option(Path("params.yaml"), help="Parameter file (reads data.* and synthetic.*)."),
    out: Path = typer.Option(Path("data/prepared"), help="Prepared-dataset directory to write."),
) -> None:
    """Prepare the dataset named by data.dataset: split it and record its class distribution."""
    p = Params.load(params)
    dataset = p.get("data.dataset", str, one_of(*DATASETS))
    with atomic_path(out) as tmp:
        if dataset == "synthetic":
            from pipeline_lib.data.synthetic.dataset import prepare_synthetic

            size = p.raw("synthetic.image_size")
            if not (isinstance(size, list) and len(size) == 2):
                raise UserError(f"{p.source}: 'synthetic.image_size' must be [height, width], got {size!r}")
            prepare_synthetic(tmp, seed=p.get("synthetic.seed", int),
                              num_train_images=p.get("synthetic.num_train_images", int, positive),
                              num_val_images=p.get("synthetic.num_val_images", int, positive),
                              image_size=(int(size[0]), int(size[1])),
                              labeled_fraction=p.get("data.labeled_fraction", float, open_fraction))
            return
        root = p.get("data.root", str, default=None)
        if root is None:
            raise UserError(f"{p.source}: 'data.root' must name the {dataset} dataset directory")
        root = Path(root)
        if not root.is_dir():
            raise UserError(f"{p.source}: data.root {str(root)!r} is not a directory")
        labeled_fraction = p.get("data.labeled_fraction", float, open_fraction, default=None)
        seed = p.get("data.split_seed", int)
        lists = {key: (Path(v) if v else None) for key in ("labeled_list", "unlabeled_list")
                 for v in [p.get(f"data.{key}", str, default=None)]}
        if dataset == "cityscapes":
            from pipeline_lib.data.cityscapes import prepare_cityscapes

            prepare_cityscapes(tmp, root, labeled_fraction, seed, **lists)
        elif dataset == "voc":
            from pipeline_lib.data.voc import prepare_voc

            prepare_voc(tmp, root, labeled_fraction, p.get("data.labeled_count", int, positive, default=None),
                        seed, **lists)
        else:
            from pipeline_lib.data.folder import prepare_folder

            prepare_folder(tmp, root, labeled_fraction,
                           p.get("data.val_fraction", float, open_fraction, default=None), seed)
    typer.echo(f"prepared {dataset} dataset in {out}")


if __name__ == "__main__":
    run_standalone(prepare)
