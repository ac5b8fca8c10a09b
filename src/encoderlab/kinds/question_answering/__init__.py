"""Extractive question answering: a span of the context, SQuAD EM/F1.

``kind.KIND`` is what :func:`encoderlab.kinds.get_kind` returns; ``data`` prepares the splits."""
