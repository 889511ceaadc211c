"""The ``--help`` formatter every command line of the project uses: defaults shown, read from the parser."""

from __future__ import annotations

import argparse


class DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``(default: X)`` after each option's help, except for unset defaults (None, False, "", []).

    The value shown is the parser's ``default=`` itself, so it comes from the settings module that
    defines it and is never repeated in help text.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        default = action.default
        if default is None or default is False or (isinstance(default, (str, list, tuple)) and not default):
            return action.help
        return super()._get_help_string(action)
