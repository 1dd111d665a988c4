"""Exit codes of the BIDS execution specification, and the error that carries one.

Every error a user can cause (a wrong path, an unknown label, a file that
cannot be read) is raised as :class:`AppError` with a one-line message; the
command line prints that line to stderr and exits with its code, never with a
traceback.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes, following the BIDS-Apps execution specification."""

    OK = 0
    FAILURE = 1
    VALIDATION_FAILED = 16
    UNKNOWN_LEVEL = 17
    NOTHING_SELECTED = 18
    USAGE = 64
    BAD_DATA = 65
    NO_INPUT = 66
    CANNOT_CREATE_OUTPUT = 73


class AppError(Exception):
    """An error the user can fix: printed as one line, exits with ``code``."""

    def __init__(self, message: str, code: ExitCode = ExitCode.FAILURE) -> None:
        super().__init__(message)
        self.code = ExitCode(code)
