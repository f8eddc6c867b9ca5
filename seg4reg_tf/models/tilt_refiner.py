"""The tilt refiner (beyond the paper; after VCRLD-Net, which crops each vertebra before it
reads the corners): a small CNN that reads one vertebra's crop (`vertebra_crops`), turned by
a first estimate φ of its tilt, and answers the tilt left over, in units of
`RESIDUAL_UNIT_DEGREES`. The vertebra route then reads θ = φ + residual.

    crop (K, S, S, 1) → 4 × [3×3 conv, BN, ReLU; 3×3 conv stride 2, BN, ReLU] → flatten
                      → dense 128, ReLU → dense 1 → residual (K, 1)
"""

from __future__ import annotations

import keras

from seg4reg_tf.config import RefinerConfig

# the refiner's output unit: a residual of 1 means 5° (a first estimate is off by a few degrees)
RESIDUAL_UNIT_DEGREES = 5.0
_FILTERS = (16, 32, 64, 128)
# a crop's side over its vertebra's width (the route's crops and the training crops alike)
MARGIN = 1.3


def build_tilt_refiner(settings: RefinerConfig, *, synchronized: bool = False, name: str = "tilt_refiner") -> keras.Model:
    """The refiner for `settings.crop_size` crops: (K, S, S, 1) float32 in [0, 1] → (K, 1)
    float32 residual tilts (× `RESIDUAL_UNIT_DEGREES` degrees, image axes, y down).
    `synchronized`: BatchNorm synchronised across replicas (multi-worker training)."""
    size = settings.crop_size
    inputs = keras.Input((size, size, 1), name="crop")
    x = keras.layers.Rescaling(2.0, offset=-1.0)(inputs)
    for stage, filters in enumerate(_FILTERS):
        for stride in (1, 2):
            x = keras.layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, name=f"conv{stage}_{stride}")(x)
            x = keras.layers.BatchNormalization(synchronized=synchronized, name=f"bn{stage}_{stride}")(x)
            x = keras.layers.ReLU()(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(128, activation="relu", name="hidden")(x)
    outputs = keras.layers.Dense(1, name="residual", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=name)
