"""Serving a trained run: load an export (PyTorch, feature-based or ONNX), predict files, export to ONNX.

``served`` finds and loads a model folder, ``predict`` turns rows of text into predictions, ``onnx`` exports
and quantizes, ``evaluate`` scores and times every variant on the run's own test split.
"""
