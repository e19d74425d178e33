"""The stage stores: per-image arrays in sharded zarr v3 groups — the teacher's logits (``infer``) and the
pseudo labels (``pseudo-label``) — over one sharded-stack layer."""
