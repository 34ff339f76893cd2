"""What the tools print, and nothing else: the converter's, LiteRT's and the libraries' own
output (accelerator probes, INFO lines, JAX lowering logs, progress bars) goes to a log kept
aside, shown with --verbose, and saved (its path printed) when a tool fails with a bug.

The tool's own text goes to the real stdout (generated text, tables) and stderr (progress, one-line
errors) through `out` and `log`.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
from typing import IO

_real: dict[str, IO[str]] = {}
_sink: IO[bytes] | None = None


def capture() -> None:
  """Sends file descriptors 1 and 2 (so every library's output, native code's included, and
  anything printed at exit) to an anonymous temp file; `out` and `log` keep the real ones."""
  global _sink
  if _sink is not None:
    return
  sys.stdout.flush()
  sys.stderr.flush()
  _real["out"] = os.fdopen(os.dup(1), "w", buffering=1)
  _real["err"] = os.fdopen(os.dup(2), "w", buffering=1)
  _sink = tempfile.TemporaryFile()
  os.dup2(_sink.fileno(), 1)
  os.dup2(_sink.fileno(), 2)


def captured() -> bool:
  return _sink is not None


def stdout() -> IO[str]:
  return _real.get("out", sys.stdout)


def stderr() -> IO[str]:
  return _real.get("err", sys.stderr)


# Whether stdout's last write left a line open (text streamed token by token): a progress or
# error line then starts on a line of its own, not glued to the text.
_line_open = [False]


def out(text: str, end: str = "\n") -> None:
  """Writes the tool's output (generated text, tables) to the real stdout."""
  stream = stdout()
  stream.write(text + end)
  stream.flush()
  if text + end:
    _line_open[0] = not (text + end).endswith("\n")


# A signal the tool has not finished handling (tools/common.py): the exception it raised can be
# swallowed by a library's bare `except:` (seen while the converter imports), so every progress
# line of the main thread raises it again until the tool has stopped.
pending: list[type[BaseException]] = []


def handled() -> None:
  """Marks a pending Ctrl-C as handled: for a tool whose normal way to stop is Ctrl-C (a server
  that a library runs and stops), which then goes on to log and exit 0."""
  pending.clear()


def log(message: str) -> None:
  """Writes a progress line to the real stderr; first raises again a Ctrl-C or SIGTERM that a
  library swallowed (main thread only)."""
  if pending and threading.current_thread() is threading.main_thread():
    raise pending[0]()
  if _line_open[0]:
    _line_open[0] = False
    stdout().write("\n")
    stdout().flush()
  stream = stderr()
  stream.write(message + "\n")
  stream.flush()


def save_log(path: os.PathLike) -> bool:
  """Copies what the libraries printed so far to `path`; False if nothing was captured."""
  if _sink is None:
    return False
  sys.stdout.flush()
  sys.stderr.flush()
  _sink.seek(0)
  with open(path, "wb") as f:
    while block := _sink.read(1 << 20):
      f.write(block)
  return True
