"""Errors a user can fix. Scripts print them as one `error: ...` line, never a traceback."""


class UserError(Exception):
    """Something in the user's input or config is wrong; the message names the fix.
    cli.run_main prints `<label>: <message>` and exits with `exit_code`."""
    label = "error"
    exit_code = 2


class ConfigError(UserError):
    """The YAML is missing a key or holds a value the pipeline cannot use."""


class InputError(UserError):
    """A manuscript or chunk file cannot be used as it is."""


class EvaluationError(UserError):
    """Stage 4 cannot go on; the message says why and what to do."""


class MergeError(UserError):
    """Stage 3 cannot go on; the message says why and what to do."""


class ServeError(UserError):
    """Stage 5 cannot go on; the message says why and what to do."""
