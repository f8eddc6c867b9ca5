"""Commands start quietly: no TensorFlow start-up logs unless --verbose."""

import os
import subprocess
import sys
import textwrap


def run(tmp_path, *extra):
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    command = [sys.executable, "-m", "seg4reg_tf.predict", "--saved-model", str(tmp_path / "none"), "x.jpg", "--out", str(tmp_path / "out"), *extra]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def test_a_command_prints_only_its_own_error(tmp_path):
    quiet = run(tmp_path)
    assert quiet.returncode == 2
    assert quiet.stderr.strip().splitlines() == [f"error: {tmp_path / 'none'}: no saved_model.pb here nor in a numeric version folder below it"]
    loud = run(tmp_path, "--verbose")
    assert loud.returncode == 2 and len(loud.stderr.strip().splitlines()) > 1  # TensorFlow's own lines


def test_a_script_starts_tensorflow_quietly_with_quiet_start():
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    code = "import seg4reg_tf; {}import tensorflow as tf; tf.constant(1.0) + 1.0"
    quiet = subprocess.run([sys.executable, "-c", code.format("seg4reg_tf.quiet_start(); ")], capture_output=True, text=True, env=env, timeout=300)
    loud = subprocess.run([sys.executable, "-c", code.format("")], capture_output=True, text=True, env=env, timeout=300)
    assert quiet.returncode == 0 and loud.returncode == 0
    assert quiet.stderr == "" and loud.stderr != ""  # a plain import prints TensorFlow's start-up lines here


def test_tensorflows_info_records_are_shown_only_with_verbose(tmp_path):
    """TensorFlow logs "Sharding callback duration" at every checkpoint save (through absl)
    at INFO: a command's output keeps it out unless --verbose. Run as a command runs: a fresh
    process that configures logging, then saves a checkpoint as a phase's backup does."""
    code = textwrap.dedent(f"""
        import seg4reg_tf
        seg4reg_tf.quiet_start()
        from seg4reg_tf import cli
        cli.configure_logging({{}})
        import tensorflow as tf
        manager = tf.train.CheckpointManager(tf.train.Checkpoint(v=tf.Variable(1.0)), {str(tmp_path / "backup")!r}, max_to_keep=1)
        manager.save()
        print("saved")
    """)
    quiet, verbose = (subprocess.run([sys.executable, "-c", code.format(flag)], capture_output=True, text=True, timeout=300)
                      for flag in (False, True))
    assert quiet.returncode == 0 and verbose.returncode == 0 and "saved" in quiet.stdout
    assert "Sharding callback duration" not in quiet.stdout + quiet.stderr
    assert "Sharding callback duration" in verbose.stdout + verbose.stderr
