"""Multi-task fine-tuning: one shared encoder, one head per task (other kinds' data and heads).

``kind.KIND`` is what :func:`encoderlab.kinds.get_kind` returns; ``data`` prepares the splits."""
