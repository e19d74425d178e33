"""The stage stores: per-image arrays in sharded zarr v3 groups — the teacher's logits (``infer``), their
confidences and histogram (``confidence``) and the pseudo labels (``pseudo_label``) — over one store contract
(``sharded_stack``: one writer, one checked reader)."""
