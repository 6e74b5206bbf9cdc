"""The one exception type for mistakes a user can fix (bad path, bad config, bad file).

Entry points catch :class:`UserError`, print its message on one line and exit with a
non-zero status, without a traceback. Anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
  """An error caused by user input; its message names the offending thing."""
