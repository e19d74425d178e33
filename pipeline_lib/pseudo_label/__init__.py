"""Pseudo-labelling: the paper's rules (ST, CBST, DA, DARS) applied to a teacher's confidence store, the
labelling pass and its statistics."""
