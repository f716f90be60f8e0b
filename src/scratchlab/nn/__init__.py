"""The from-scratch NumPy engine: layers, losses, optimizers, networks and training.

Import from the submodules; all array math goes through ``scratchlab.nn.backend.xp``:

- ``network``: ``NetworkSpec`` (the ``model.*`` config), ``build_network(spec, rng)``
- ``optimizers``: ``make_optimizer(name, lr, **hyper)`` (the ``optimizer.*`` config)
- ``training``: ``fit(...) -> History``, ``EarlyStopping``, ``evaluate``
- ``persistence``: ``save_network`` / ``load_network`` (.npz weights + .json spec)
- ``pyfunc``: ``log_pyfunc_model`` (MLflow python_function model)
- ``gradcheck``: ``numerical_gradient``, ``check_gradients``
"""
