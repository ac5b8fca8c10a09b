"""Pre-training: masked LM alone or with NSP/SOP, and ELECTRA replaced-token detection.

``kind.KIND`` is what :func:`encoderlab.kinds.get_kind` returns; ``data`` prepares the splits."""
