"""runtime/compiled_stats.py: opcode counts and memory of programs whose contents are known."""

import jax
import jax.numpy as jnp
from jax import lax

from learned_resize.runtime import compiled_stats

_HLO = """\
HloModule m, entry_computation_layout={(f32[4,3]{1,0})->f32[3]{0}}

FileLocations
1 {file_name_id=1 function_name_id=1 line=6 end_line=6 column=4 end_column=54}

%add (a: f32[], b: f32[]) -> f32[] {
  %a = f32[] parameter(0)
  %b = f32[] parameter(1)
  ROOT %add.1 = f32[] add(%a, %b)
}

%fused (p: f32[4,3]) -> f32[3,4] {
  %p = f32[4,3]{1,0} parameter(0)
  ROOT %transpose.2 = f32[3,4]{1,0} transpose(%p), dimensions={1,0}
}

ENTRY %main (x: f32[4,3]) -> f32[3] {
  %x = f32[4,3]{1,0} parameter(0)
  %c = f32[] constant(0)
  %copy.1 = f32[4,3]{0,1} copy(%x), metadata={op_name="jit(f)/copy"}
  %fusion = f32[3,4]{1,0} fusion(%copy.1), kind=kLoop, calls=%fused
  %reduce.7 = f32[3]{0} reduce(%fusion, %c), dimensions={1}, to_apply=%add
  %all-reduce = f32[3]{0} all-reduce(%reduce.7), to_apply=%add
  %rw = f32[2,1]{1,0} reduce-window(%x, %c), window={size=2x3 stride=2x3}, to_apply=%add
  %t = (f32[], f32[], f32[], f32[], f32[], /*index=5*/f32[]) tuple(%c, %c, %c, %c, %c, %c)
  ROOT %r = f32[3]{0} reduce(%all-reduce, %c), dimensions={}, to_apply=%add
}
"""


def test_counts_of_hand_written_hlo():
    counts = compiled_stats.op_counts(_HLO, ops=(*compiled_stats.COUNTED_OPS, "all-reduce"))
    assert counts == {
        "copy": 1,
        "transpose": 1,  # inside the fused computation
        "reduce": 2,  # all-reduce is not a reduce
        "reduce-window": 1,
        "all-reduce": 1,
    }
    assert compiled_stats.op_counts(_HLO, ops=("tuple", "add", "parameter")) == {
        "tuple": 1,  # its shape holds "/*index=5*/"
        "add": 1,
        "parameter": 4,
    }


def test_counts_and_memory_of_compiled_programs():
    def f(x, y):
        pooled = lax.reduce_window(x, -jnp.inf, lax.max, (2, 2), (2, 2), "VALID")
        return jnp.sum(pooled), jnp.max(y, axis=1)

    x, y = jnp.ones((8, 8), jnp.float32), jnp.ones((4, 5), jnp.float32)
    stats = compiled_stats.summary(jax.jit(f).lower(x, y).compile())
    assert stats["reduce-window"] == 1
    assert stats["reduce"] == 2  # the sum and the max
    assert stats["argument_bytes"] == (8 * 8 + 4 * 5) * 4
    assert stats["flops"] > 0

    identity = jax.jit(lambda x: x + 1).lower(x).compile()
    assert compiled_stats.op_counts(identity) == dict.fromkeys(compiled_stats.COUNTED_OPS, 0)
