"""encoderlab: config-driven experiments for BERT-style encoders."""

__version__ = "0.1.0"
