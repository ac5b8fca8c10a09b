"""Token classification (NER, POS): a label per word, entity-level scores.

``kind.KIND`` is what :func:`encoderlab.kinds.get_kind` returns; ``data`` prepares the splits."""
