"""bfloat16 compute (beyond the paper): layers computing in bfloat16 with float32 weights
(Keras' "mixed_bfloat16" policy), for CPUs with AVX512_BF16 / AMX where oneDNN runs
bfloat16 convolutions faster. Exports use a copy (`with_precision`); the N_S phases
(`seg.precision`, `roie.precision`) switch the network in place while they train and back
to float32 before it is saved (`set_precision`).
"""

from __future__ import annotations

import keras

from seg4reg_tf.models.walk import all_layers

PRECISIONS = {"float32": "float32", "bfloat16": "mixed_bfloat16"}


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
