"""What a compiled XLA program does, read from the program itself (no timing).

    compiled = jax.jit(step).lower(*args).compile()
    compiled_stats.summary(compiled)
    # {'flops': ..., 'temp_bytes': ..., 'argument_bytes': ..., 'output_bytes': ...,
    #  'alias_bytes': ..., 'copy': ..., 'transpose': ..., 'reduce': ..., 'reduce-window': ...}

The counts are instructions of the optimised HLO that XLA runs (`compiled.as_text()`),
fused computations included: copies and transposes move memory without doing the
model's arithmetic, reductions and reduce-windows (BatchNorm statistics, pooling, their
gradients) read whole tensors. They do not depend on the machine's load, so a change is
judged on a shared machine by what it removes. FLOPs are XLA's cost analysis, the byte
counts its memory analysis of the compiled program.
"""

import collections
import re

COUNTED_OPS = ("copy", "transpose", "reduce", "reduce-window")

# `[ROOT] %name = <shape> opcode(operands), attributes`: the opcode is the first word
# followed by "(" after the "=". Shapes hold no such word (tuple shapes may hold
# `/*index=5*/` comments, hence no "[^=]" here).
_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?[\w.-]+\s*=\s*.*?\s([a-z][a-z0-9-]*)\(")


def op_counts(hlo, ops=COUNTED_OPS) -> dict:
    """Instructions per opcode in `ops`, of HLO text or of a compiled program."""
    text = hlo if isinstance(hlo, str) else hlo.as_text()
    counts = collections.Counter()
    for line in text.splitlines():
        match = _INSTRUCTION.match(line)
        if match:
            counts[match.group(1)] += 1
    return {op: counts[op] for op in ops}


def xla_flops(compiled) -> float:
    """FLOPs of a compiled program per XLA's cost analysis (a multiply-add counts 2)."""
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):  # Older JAX: one dict per program.
        analysis = analysis[0]
    return float(analysis["flops"])


def summary(compiled) -> dict:
    """FLOPs, XLA's memory analysis in bytes and the counted opcodes of `compiled`."""
    memory = compiled.memory_analysis()
    return {
        "flops": xla_flops(compiled),
        "temp_bytes": memory.temp_size_in_bytes,
        "argument_bytes": memory.argument_size_in_bytes,
        "output_bytes": memory.output_size_in_bytes,
        "alias_bytes": memory.alias_size_in_bytes,
        **op_counts(compiled),
    }
