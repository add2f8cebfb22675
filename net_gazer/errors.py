"""Errors a user can cause. Entry points print them as one sentence and exit non-zero."""

from __future__ import annotations


class UserError(Exception):
    """Something the user can fix: bad config, missing permission, unknown interface, ...

    The message is one sentence that says what is wrong and what to do.
    """

    exit_code = 2


class ConfigError(UserError):
    """The configuration (file, environment or flags) is invalid."""
