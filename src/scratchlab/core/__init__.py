"""The ground every part stands on: errors and exit codes, value rules, paths, atomic files, and
how a scratchlab process lives and ends (entry, signals, lifeline, identity, BLAS threads)."""
