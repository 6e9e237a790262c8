"""The error of reading an interaction log, in a module of its own so that every reader (``validation.py``,
``compressed.py``) can raise it without importing another."""


class LogFormatError(ValueError):
    """Raised when an interaction log cannot be read as asked: a bad row, a missing column, an empty file."""
