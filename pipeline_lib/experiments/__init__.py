"""The experiment side: the ablation grid as DVC experiments (grid), its committed record and tables (record,
comparison), figures, the round-0 curve (curve), round 0 trained ahead in a clone (round0), and the dvc/git calls
they share (dvc_git). `dars ablation` and `dars compare` are their commands."""
