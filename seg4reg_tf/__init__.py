"""seg4reg_tf: Seg4Reg+ (Lin et al., MICCAI 2021) in TensorFlow / Keras 3.

Commands (`python -m seg4reg_tf.<command>`) start quietly: TensorFlow's C++ start-up logs
(CUDA probing on a machine without a GPU, CPU-feature notices) are hidden unless `--verbose`
is on the command line or TF_CPP_MIN_LOG_LEVEL is set. Importing the package as a library
changes nothing.
"""

import os as _os
import sys as _sys


def _import_tensorflow_quietly() -> None:
    """Imports TensorFlow with C++ logs below FATAL off. TF 2.21 writes some lines to the
    process's stderr before its log level is read ("All log messages before
    absl::InitializeLog()"), so file descriptor 2 points at /dev/null during the import; a
    Python exception raised by the import is still reported (after stderr is restored)."""
    _os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    saved, null = _os.dup(2), _os.open(_os.devnull, _os.O_WRONLY)
    _os.dup2(null, 2)
    try:
        import tensorflow  # noqa: F401
    finally:
        _os.dup2(saved, 2)
        _os.close(saved)
        _os.close(null)


def quiet_start() -> None:
    """Starts TensorFlow without its C++ start-up logs, unless `--verbose` is on the command
    line or TF_CPP_MIN_LOG_LEVEL is set. For scripts (bench/): call it before anything
    imports TensorFlow; the commands need not, this package does it for them."""
    if "--verbose" not in _sys.argv and "TF_CPP_MIN_LOG_LEVEL" not in _os.environ:
        _import_tensorflow_quietly()


# While `python -m` locates the command's module, sys.argv[0] is "-m": this package is
# imported first, so this runs before the command imports TensorFlow.
if _sys.argv[:1] == ["-m"]:
    quiet_start()
