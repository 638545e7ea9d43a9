"""The one exception type for bad user input: shown as a single line, exit code 2."""


class UserError(Exception):
    """Bad input from the user (a path, a value, a file); the message names it and what is wrong.

    The CLI prints ``error: <message>`` on stderr and exits with code 2, without a traceback.
    """
