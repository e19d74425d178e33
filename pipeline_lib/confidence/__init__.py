"""Per-pixel confidences of a teacher's predictions and their histogram: computed once per teacher (the
``confidence`` stage), read by every pseudo-label rule (the ``pseudo_label`` stage)."""
