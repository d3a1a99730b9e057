"""`tools/step_speed.py`: the batch search, on a stand-in step whose memory limit is known.
(The timed step itself runs in tests/tools/test_device_check.py, through the CLI.)"""

import pytest

from learned_resize.tools import step_speed


def test_largest_batch_halves_on_out_of_memory_only():
    tried = []

    def fits_64(batch):
        tried.append(batch)
        if batch > 64:
            raise RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate")
        return f"step at {batch}"

    assert step_speed.largest_batch(fits_64, 256, multiple=8) == (64, "step at 64")
    assert tried == [256, 128, 64]
    tried.clear()
    assert step_speed.largest_batch(fits_64, 100, multiple=8)[0] == 48  # 96, 48
    assert tried == [96, 48]
    with pytest.raises(MemoryError, match="batch 8 does not fit"):
        step_speed.largest_batch(lambda b: fits_64(b * 100), 32, multiple=8)

    def broken(batch):
        raise ValueError("not a memory error")

    with pytest.raises(ValueError, match="not a memory error"):
        step_speed.largest_batch(broken, 256)
