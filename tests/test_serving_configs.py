"""serving/*.config parse as the protos TF Serving reads them with, and fit the export."""

import pathlib

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format
from tensorflow_serving.config import model_server_config_pb2

from seg4reg_tf.config import ExportConfig

SERVING = pathlib.Path(__file__).resolve().parent.parent / "serving"


def _messages():
    """BatchingParameters and MonitoringConfig as declared in TF Serving's
    session_bundle_config.proto and monitoring_config.proto (tensorflow-serving-api does not
    ship these two), rebuilt here so text_format checks every field name and type."""
    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    from google.protobuf import wrappers_pb2

    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)
    proto = descriptor_pb2.FileDescriptorProto(name="serving_test.proto", package="tensorflow.serving", dependency=[wrappers.name])
    field = descriptor_pb2.FieldDescriptorProto
    batching = proto.message_type.add(name="BatchingParameters")
    for number, name in enumerate(["max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads"], 1):
        batching.field.add(name=name, number=number, type=field.TYPE_MESSAGE, type_name=".google.protobuf.Int64Value")
    batching.field.add(name="allowed_batch_sizes", number=6, type=field.TYPE_INT64, label=field.LABEL_REPEATED)
    batching.field.add(name="pad_variable_length_inputs", number=7, type=field.TYPE_BOOL)
    prometheus = proto.message_type.add(name="PrometheusConfig")
    prometheus.field.add(name="enable", number=1, type=field.TYPE_BOOL)
    prometheus.field.add(name="path", number=2, type=field.TYPE_STRING)
    monitoring = proto.message_type.add(name="MonitoringConfig")
    monitoring.field.add(name="prometheus_config", number=1, type=field.TYPE_MESSAGE, type_name=".tensorflow.serving.PrometheusConfig")
    pool.Add(proto)
    get = lambda name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"tensorflow.serving.{name}"))  # noqa: E731
    return get("BatchingParameters"), get("MonitoringConfig")


def test_models_config_serves_the_exported_name():
    config = text_format.Parse((SERVING / "models.config").read_text(), model_server_config_pb2.ModelServerConfig())
    models = config.model_config_list.config
    assert [model.name for model in models] == [ExportConfig().model_name]
    assert models[0].base_path == "/models/seg4reg" and models[0].model_platform == "tensorflow"


def test_batching_and_monitoring_configs_parse():
    batching_class, monitoring_class = _messages()
    batching = text_format.Parse((SERVING / "batching.config").read_text(), batching_class())
    assert batching.max_batch_size.value == 8 and batching.batch_timeout_micros.value > 0
    monitoring = text_format.Parse((SERVING / "monitoring.config").read_text(), monitoring_class())
    assert monitoring.prometheus_config.enable
    with pytest.raises(text_format.ParseError):  # a misspelt field would be caught
        text_format.Parse("max_batch_sise { value: 8 }", batching_class())
