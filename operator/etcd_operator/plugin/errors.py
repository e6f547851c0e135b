"""The plugin's failures: each one is printed as one line on stderr with its exit code, never
as a traceback (``main``)."""

from __future__ import annotations

# Exit codes: 1 for a failure (kubectl's, the cluster's, a backup's, a timeout), 2 for what
# cannot be asked (a usage error, or a command whose data the operator does not record yet),
# as argparse and kubectl use them.
EXIT_FAILURE = 1
EXIT_USAGE = 2


class PluginError(Exception):
    """A failure the user can act on; the message is one line."""

    exit_code = EXIT_FAILURE


class NotFoundError(PluginError):
    pass


class ForbiddenError(PluginError):
    pass


class AlreadyExistsError(PluginError):
    pass


class KubectlMissingError(PluginError):
    pass


class NotAvailableError(PluginError):
    """What the operator does not record yet: refused rather than made up."""

    exit_code = EXIT_USAGE
