"""arnn: hyperparameter search and reproduction for AntisymmetricRNN and its successors."""

__version__ = "0.1.0"
__all__ = ["__version__"]
