"""Errors a user can cause, and how they reach the command line.

A UserError carries one line naming the file and the fix; the CLI prints it and exits 2.
"""
from __future__ import annotations

import logging

log = logging.getLogger("editorbot")


class UserError(Exception):
    """A problem with the user's input or settings, shown as one line, exit status 2."""

    exit_code = 2


class AudioError(UserError):
    """An audio file that cannot be read as audio (missing, empty, corrupt, NaN...)."""
