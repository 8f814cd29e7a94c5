"""Evaluation metrics: Fréchet distance, its real-vs-real floor, KID, corruptions and robustness curves."""
