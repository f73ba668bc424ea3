"""Error types that xlcore raises for bad input; each message names the fix."""


class XlcoreError(Exception):
    """Base class for every error xlcore raises on purpose."""


class DataError(XlcoreError, ValueError):
    """Input data is missing or malformed (the message names the file and line)."""


class ConfigError(XlcoreError, ValueError):
    """A configuration, profile override or parameter is invalid."""


class TrainingError(XlcoreError, RuntimeError):
    """Training diverged (NaN/inf loss) or cannot proceed."""


class RunLockedError(XlcoreError, RuntimeError):
    """Another process holds the lock on a runs directory."""


class RunStorageError(XlcoreError, OSError):
    """A runs directory cannot be written (read-only, permission denied, disk full)."""


class GridWorkerError(XlcoreError, RuntimeError):
    """A worker process of a parallel grid died (killed, or out of memory)."""


class GridRunError(XlcoreError, RuntimeError):
    """Several runs of a grid failed; the message names each run and its error."""


class BookError(XlcoreError, RuntimeError):
    """A chapter failed to execute, or the HTML build failed."""
