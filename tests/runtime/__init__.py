"""Tests of learned_resize.runtime."""
