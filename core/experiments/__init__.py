"""Experiments: hyperparameter searches over the lecture models, judged on the dev split (lecture 3)."""
