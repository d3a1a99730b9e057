"""Configs: every key with its default (defaults.py), stages (stages.py), validation
(validation.py). Imports nothing of models/ or data/."""
