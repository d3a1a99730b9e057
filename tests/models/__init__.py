"""Tests of learned_resize.models."""
