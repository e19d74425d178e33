"""Pseudo-labelling: the paper's rules (ST, CBST, DA, DARS), the confidence computation they run on, the
exact confidence histogram, temperature scaling, the two-pass streaming run and its statistics."""
