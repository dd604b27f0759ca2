"""instantvir_cli: the `vir` video restoration tool (InstantViR)."""

__version__ = "0.1.0"
