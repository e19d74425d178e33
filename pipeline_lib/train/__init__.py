"""Training a round's model: the loop (resumable, seeded per iteration), the training images and the
provenance a checkpoint records."""
