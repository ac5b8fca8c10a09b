"""``finetune=setfit``: contrastive sentence-pair fine-tuning of the encoder, then a head on its sentence vectors
(SetFit, Tunstall et al. 2022). See :mod:`encoderlab.strategies.setfit.run`; its settings are ``finetune.setfit.*``
(:mod:`encoderlab.strategies.setfit.config`, conf/finetune/setfit.yaml). Nothing heavy is imported here: the schema
reads the config module.
"""

from __future__ import annotations

from encoderlab.strategies.base import Strategy


class SetFit(Strategy):
    name = "setfit"
    # trained by its own loop; a kind builds its network (a pooled head) only to score an export
    loop = "encoderlab.strategies.setfit.run:fit_setfit"


STRATEGY = SetFit()
