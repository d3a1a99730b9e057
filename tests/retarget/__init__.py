"""Tests of learned_resize.retarget."""
