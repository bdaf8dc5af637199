"""Training: the trainer, its configuration and recipes, checkpoints and the run's lock."""
