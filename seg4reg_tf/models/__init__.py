"""The two networks of Seg4Reg+: N_S (`build_segmenter`) and N_R (`build_regressor`)."""

from seg4reg_tf.models.backbone import copy_weights_by_name, synchronize_batch_norm
from seg4reg_tf.models.pspnet import build_segmenter, copy_segmenter_weights, segmenter_layer, segmenter_layers
from seg4reg_tf.models.regressor import build_regressor, mask_branch_inputs, regressor_inputs, start_at_mean_angles

__all__ = [
    "build_regressor",
    "build_segmenter",
    "copy_segmenter_weights",
    "copy_weights_by_name",
    "mask_branch_inputs",
    "regressor_inputs",
    "segmenter_layer",
    "segmenter_layers",
    "start_at_mean_angles",
    "synchronize_batch_norm",
]
