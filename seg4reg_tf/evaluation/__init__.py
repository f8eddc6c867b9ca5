"""Evaluation beyond the scores: the paper's ablation and the evaluation figures."""
