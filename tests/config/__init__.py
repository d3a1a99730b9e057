"""Tests of learned_resize.config."""
