"""Custom Keras layers of Seg4Reg+ (backend-agnostic, registered as `seg4reg>Name`)."""

from seg4reg_tf.layers.cam import ClassActivationMap, normalize_maps, resize_maps
from seg4reg_tf.layers.coordinates import CoordinateChannels
from seg4reg_tf.layers.decoder import LowLevelDecoder
from seg4reg_tf.layers.pyramid import DilatedPyramid
from seg4reg_tf.layers.roie_gate import ROIEGate

__all__ = ["ClassActivationMap", "CoordinateChannels", "DilatedPyramid", "LowLevelDecoder", "ROIEGate", "normalize_maps", "resize_maps"]
