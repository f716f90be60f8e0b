"""The array namespace the engine computes with.

Layers, losses and optimizers call ``xp`` (NumPy by default) instead of ``np`` so that an
array library with NumPy's API (CuPy) can be slotted in later without rewriting them.
"""

import numpy

xp = numpy
