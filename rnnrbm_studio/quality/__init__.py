"""Measuring a model: log-likelihood by AIS, frame accuracy, the tutorial's monitor."""
