"""User-facing errors: the CLI prints their message on one line and exits non-zero, without a traceback."""


class AtalaiaError(Exception):
    """Base class: a mistake the user can fix; the message says what and how."""


class RecipeError(AtalaiaError):
    """The recipe (YAML) is invalid: unknown key, wrong type, value out of range."""


class DataError(AtalaiaError):
    """The dataset cannot be used: missing/empty folder, too few images per identity, unreadable file."""


class DeployError(AtalaiaError):
    """A model cannot run on the target: unsupported TFLM op, arena or flash over budget."""


class AtalaiaWarning(UserWarning):
    """Something the user should know that does not stop the work; the CLI prints it as one `warning:` line."""
