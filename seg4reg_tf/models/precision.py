"""bfloat16 compute (beyond the paper): layers computing in bfloat16 with float32 weights
(Keras' "mixed_bfloat16" policy), for CPUs with AVX512_BF16 / AMX where oneDNN runs
bfloat16 convolutions faster. Exports use a copy (`with_precision`); the N_S phases
(`seg.precision`, `roie.precision`) switch the network in place while they train and back
to float32 before it is saved (`set_precision`).
"""

from __future__ import annotations

import pathlib

import keras

from seg4reg_tf.models.walk import all_layers

PRECISIONS = {"float32": "float32", "bfloat16": "mixed_bfloat16"}
# CPU flags (Linux /proc/cpuinfo) of native bfloat16 arithmetic, which `auto` looks for.
BFLOAT16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


def resolve_precision(precision: str, cpuinfo: str = "/proc/cpuinfo") -> str:
    """"float32" / "bfloat16" as given; "auto" → "bfloat16" where the CPU computes bfloat16
    natively (a flag of `BFLOAT16_CPU_FLAGS` in `cpuinfo`), else "float32" (also where
    `cpuinfo` cannot be read, e.g. off Linux)."""
    if precision != "auto":
        return precision
    try:
        flags = set(pathlib.Path(cpuinfo).read_text().split())
    except OSError:
        return "float32"
    return "bfloat16" if flags & set(BFLOAT16_CPU_FLAGS) else "float32"


def with_precision(model: keras.Model, precision: str) -> keras.Model:
    """`model` itself for "float32"; for "bfloat16" a copy (same weights) computing in
    bfloat16. Its float outputs are bfloat16: cast them back where float32 is needed.

    Args:
        model: a built network (N_S or N_R).
        precision: "float32" or "bfloat16".
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {sorted(PRECISIONS)}")
    if precision == "float32":
        return model
    copy = keras.models.clone_model(model, recursive=True)
    copy.set_weights(model.get_weights())
    set_precision(copy, precision)
    return copy


def set_precision(model: keras.Model, precision: str) -> None:
    """Switches every layer of `model` (nested ones included) to compute in `precision`
    ("float32" or "bfloat16"), in place; the weights stay float32. Functions traced before
    the switch keep the old precision: retrace them (e.g. a trainer's `test_function`)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {sorted(PRECISIONS)}")
    for layer in [model, *all_layers(model)]:
        layer.dtype_policy = PRECISIONS[precision]
