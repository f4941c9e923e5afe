"""User-facing errors: the CLI prints them as one line and exits with code 2."""


class UserError(Exception):
    """Bad input from the user. The message names the problem and the fix, on one line."""

    exit_code = 2


class ConfigError(UserError):
    """A config file or flag is unknown, mistyped or impossible."""
