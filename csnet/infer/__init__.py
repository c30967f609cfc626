"""Inference: the test protocol, predictors and their backends."""
