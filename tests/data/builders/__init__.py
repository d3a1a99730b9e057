"""Tests of learned_resize.data.builders."""
