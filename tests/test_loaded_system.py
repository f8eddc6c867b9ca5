"""Loading a system to answer with (serving/loaded_system.py)."""

import subprocess
import sys


def test_apply_threads_sets_the_pools_before_tensorflow_starts():
    code = ("from seg4reg_tf.serving.loaded_system import apply_threads; import tensorflow as tf; assert apply_threads(1, 1); "
            "tf.constant(1.0) + 1.0; t = tf.config.threading; print(t.get_intra_op_parallelism_threads(), t.get_inter_op_parallelism_threads()); "
            "print(apply_threads(2, 1))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == ["1", "1", "False"]  # pools fixed once TensorFlow has started
