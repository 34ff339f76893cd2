"""User-facing errors: each message names the problem and, where there is one, the fix.

Tools print these as one line and exit non-zero; anything else is a bug and keeps its traceback.
"""


class ZooError(Exception):
  """Base of every error caused by input rather than by a bug."""

  def __str__(self):  # KeyError subclasses would otherwise quote the message
    return str(self.args[0]) if self.args else ""
