"""scratchlab: neural networks from scratch in NumPy, tracked with DVC, Hydra and MLflow."""

__version__ = "0.1.0"
