"""Exceptions for expected failures (bad input, unusable files): the `gflow` command prints them
as one line, `gflow COMMAND: error: MESSAGE`, and exits with their `exit_code`. Core code raises
them without importing the command-line layer; messages name the culprit (option, file, line)."""

from __future__ import annotations


class GflowError(Exception):
    """An expected failure caused by the user's input or files, not by a bug: one line, exit 2."""

    exit_code = 2


class UsageError(GflowError):
    """An option or argument that cannot be used as given."""


class CheckFailed(GflowError):
    """A check ran to the end and found a problem (exit 1, unlike bad input)."""

    exit_code = 1
