"""The from-scratch NumPy engine: layers, losses, optimizers, networks and training.

Import from the submodules (``scratchlab.nn.network``, ``scratchlab.nn.training``...); all
array math goes through ``scratchlab.nn.backend.xp``.
"""
