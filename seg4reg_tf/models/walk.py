"""Every layer inside a network: nested models and the sublayers of custom layers."""

from __future__ import annotations

import keras


def _children(layer) -> list:
    """The layers `layer` holds directly: a model's layers, or a custom layer's attributes
    that are layers or (nested) lists of layers, as Keras tracks them."""
    if isinstance(layer, keras.Model):
        return list(layer.layers)
    found, stack = [], list(vars(layer).values())
    while stack:
        value = stack.pop(0)
        if isinstance(value, keras.layers.Layer):
            found.append(value)
        elif isinstance(value, (list, tuple)):
            stack[:0] = list(value)
    return found


def all_layers(model) -> list:
    """All layers below `model` (not `model` itself), depth first, each once."""
    seen, order = set(), []

    def visit(layer):
        for child in _children(layer):
            if id(child) not in seen:
                seen.add(id(child))
                order.append(child)
                visit(child)

    visit(model)
    return order
