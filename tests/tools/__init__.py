"""Tests of learned_resize.tools."""
