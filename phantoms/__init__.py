"""Synthetic cohorts with known generative factors: the ground truth for every evaluation."""
