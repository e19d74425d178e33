"""DARS: distribution alignment and random sampling of pseudo labels, as a DVC pipeline.

Pipeline step (dvc.yaml stage, `dars` command) → the package that does it:

- prepare → ``data`` (the prepared-dataset format; ``data.synthetic`` renders the embedded dataset)
- train (train_r0, train@rK) → ``train`` (with ``models``)
- evaluate (evaluate_r0, evaluate@rK) → ``evaluation`` (the loop, the metrics), with ``predict.inference``
- infer@rK → ``infer`` (with ``predict.inference``), into ``stores.logits_store``
- confidence@rK → ``confidence``, into ``stores.confidence_store``
- pseudo_label@rK → ``pseudo_label``, into ``stores.pseudo_label_store``
- ``dars predict`` → ``predict.segment``; ``dars inspect`` → ``inspection``; ``dars compare`` →
  ``comparison``; ``dars ablation`` → ``ablation``

Every stage reads params.yaml through ``settings`` and writes under the paths of ``layout`` (which also names
the model an artifact was made from, by its sha256).
"""
