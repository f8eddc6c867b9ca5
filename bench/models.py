"""Parameter counts and FLOPs per image of N_S and N_R at the paper's 512×256 input.

    python bench/models.py [--height 512 --width 256]

FLOPs come from TensorFlow's profiler on the frozen inference graph (a multiply-add counts
as 2 FLOPs); MACs = FLOPs / 2.
"""

import argparse

import seg4reg_tf  # noqa: E402

seg4reg_tf.quiet_start()

import tensorflow as tf  # noqa: E402
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2  # noqa: E402

from seg4reg_tf.config import config_from_dict  # noqa: E402
from seg4reg_tf.models import build_regressor, build_segmenter  # noqa: E402


def flops(model, specs) -> int:
    """Float operations of one inference call with inputs of `specs` (batch 1)."""
    function = tf.function(lambda inputs: model(inputs, training=False)).get_concrete_function(specs)
    graph = convert_variables_to_constants_v2(function).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    return tf.compat.v1.profiler.profile(graph=graph, run_meta=tf.compat.v1.RunMetadata(), cmd="op", options=options).total_float_ops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=256)
    args = parser.parse_args()
    config = config_from_dict({
        "data": {"image_height": args.height, "image_width": args.width},
        "segmenter": {"weights": "none"},
        "regressor": {"weights": "none"},
    })
    h, w = args.height, args.width
    image = tf.TensorSpec([1, h, w, 1], tf.float32)
    cam = tf.TensorSpec([1, h // 32, w // 32, 1], tf.float32)
    rows = [
        ("N_S (dilated PSPNet, ResNet-50)", build_segmenter(config.segmenter, config.data.image_size), {"image": image}),
        ("N_S with ROIE gate", build_segmenter(config.segmenter, config.data.image_size, with_roie=True), {"image": image, "cam": cam}),
        ("N_R (EfficientNet-B1, image+mask)", build_regressor(config.regressor, config.data.image_size), tf.TensorSpec([1, h, w, 2], tf.float32)),
    ]
    print(f"| network at {h}×{w} | parameters | trainable | GFLOPs / image | GMACs / image |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, model, specs in rows:
        total = flops(model, specs)
        trainable = sum(int(tf.size(v)) for v in model.trainable_weights)
        print(f"| {name} | {model.count_params():,} | {trainable:,} | {total / 1e9:.1f} | {total / 2e9:.1f} |")


if __name__ == "__main__":
    main()
