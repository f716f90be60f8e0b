"""Reading, fetching and validating the raw datasets the pipeline trains on.

Every expected failure raises ``scratchlab.core.errors.DataError`` with a one-line message, and
every file is written atomically, so a failed fetch never leaves a half-written file behind.
"""
