"""The experiments' config files (ml_collections ConfigDicts), one `get_config()` each.

Run one with `python -m learned_resize.main --config=configs/NAME.py[:ARG]`; tests
import them as modules (`from configs import tiny`). Config files import only from the
`learned_resize` package, never from each other, so they work from any directory.
"""
