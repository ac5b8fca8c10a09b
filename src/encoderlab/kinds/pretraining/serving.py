"""What a pre-training export serves: a masked-LM model (the hub's fill-mask pipeline) for the card; encoderlab-predict
serves fine-tuned kinds and refuses it (it recognizes no folder)."""

from __future__ import annotations

from encoderlab.kinds.base import Serving


class PretrainingServing(Serving):
    name = "pretraining"
    pipeline_tag = "fill-mask"


SERVING = PretrainingServing()
