"""Sequence classification and regression: one text or a pair -> a label or a value.

``kind.KIND`` is what :func:`encoderlab.kinds.get_kind` returns; ``data`` prepares the splits."""
