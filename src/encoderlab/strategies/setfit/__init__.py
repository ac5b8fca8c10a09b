"""``finetune=setfit``: contrastive sentence-pair fine-tuning of the encoder, then a head on its sentence vectors
(SetFit, Tunstall et al. 2022). See :mod:`encoderlab.strategies.setfit.run`; its settings are ``finetune.setfit.*``
(:mod:`encoderlab.strategies.setfit.config`, conf/finetune/setfit.yaml). Nothing heavy is imported here: the schema
reads the config module.
"""
