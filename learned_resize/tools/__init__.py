"""Command-line tools around a trained model: export, applying a resizer, eval-mode check,
the doctor and FLOP counts. Each runs as `python -m learned_resize.tools.NAME`."""
