"""What the engine accepts, declared as data with its rules: architectures, optimizers, training.

The engine (``scratchlab.nn``) builds from these and checks its arguments with them; the config
(``scratchlab.config``) checks user values with the same rules, so a rule is written once and the
config never imports the engine."""
