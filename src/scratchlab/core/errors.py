"""The project's own error types.

Every expected failure (bad file, bad config, unreachable store) raises a subclass of
``ScratchlabError`` whose message is one line naming the file or key and what was expected.
Entry points catch it, log it and exit non-zero instead of printing a traceback.
"""


class ScratchlabError(Exception):
    """Base class: an expected, user-facing failure with a one-line message."""

    exit_code = 1


class DataError(ScratchlabError):
    """A data file is missing, corrupt, or does not hold what its format promises."""

    exit_code = 3


class ConfigError(ScratchlabError):
    """A configuration value is invalid; raised before any training or tracking starts."""

    exit_code = 2


class TrackingError(ScratchlabError):
    """The MLflow tracking store cannot be reached or written."""

    exit_code = 4


class DivergedError(ScratchlabError):
    """Training produced a NaN/inf (or exploding) loss and was stopped."""

    exit_code = 5
