"""The model-from-code file MLflow stores with every logged network and runs to load it.

MLflow copies this file into the model directory and executes it on load (instead of
unpickling an object, which could run arbitrary code). It needs ``scratchlab`` importable.
"""

import mlflow

from scratchlab.nn.pyfunc import NetworkModel

mlflow.models.set_model(NetworkModel())
