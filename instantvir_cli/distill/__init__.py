"""Distillation of InstantViR (`vir distill`): data, losses, stages, trainer, export.

Entry point: `instantvir_cli.distill.trainer.run_distill(config, out=..., max_steps=..., resume=...)`.
"""
