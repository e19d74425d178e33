"""The infer step of a round: the teacher's logits on both splits, and its temperature fitted on the labelled one."""
