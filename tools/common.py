"""What every zoo command line shares: user paths, quiet output, one-line errors."""

from __future__ import annotations

import errno
import os
import pathlib
import re
import signal
import sys
import time
import traceback
from typing import Callable

from absl import app, flags

from litezoo.core.errors import ZooError  # noqa: F401  (re-exported for tools)
from litezoo.tools import console

_VERBOSE = flags.DEFINE_bool(
    "verbose", False, "Also show what the converter, LiteRT and the libraries print (accelerator "
    "probes, lowering logs, progress bars); without it they go to a log kept aside.")


def user_path(path: str) -> pathlib.Path:
  """Resolves a path the user typed against the directory they ran `bazel run` from."""
  base = os.environ.get("BUILD_WORKING_DIRECTORY", os.getcwd())
  return pathlib.Path(base, os.path.expanduser(path))


class Terminated(KeyboardInterrupt):
  """SIGTERM, raised where the process is, so cleanup runs as for Ctrl-C."""


def _interrupt(signum, frame):
  """Ctrl-C and SIGTERM: raised where the process is, and kept pending (console.pending) until
  run() has handled it, in case a library swallows the exception."""
  del frame
  console.pending.append(Terminated if signum == signal.SIGTERM else KeyboardInterrupt)
  raise console.pending[-1]()


_NOT_A_NUMBER = re.compile(r"^flag --(\w+)=(.*): (invalid literal for int\(\)|could not "
                           r"convert string to float)")


_NOT_A_BOOL = re.compile(r"^flag --(\w+)=(.*): \('Non-boolean argument to boolean flag'")


_UNKNOWN = re.compile(r"^Unknown command line flag '([\w-]+)'")


def _flag_error(e: Exception) -> str:
  """absl's message, with Python's int()/float() wording replaced by the flag's type, and its
  tuple for a value given to an on/off flag replaced by words."""
  found = _NOT_A_BOOL.match(str(e))
  if found:
    name, value = found.groups()
    return (f"--{name} is on or off and takes no value such as {value!r}: write --{name} or "
            f"--no{name}")
  found = _UNKNOWN.match(str(e))
  if found:  # --no_X or --no-X for an on/off flag X: absl's spelling is --noX
    off = re.fullmatch(r"no[-_](\w[\w-]*)", found.group(1))
    name = off and off.group(1).replace("-", "_")
    if name and isinstance(flags.FLAGS[name] if name in flags.FLAGS else None,
                           flags.BooleanFlag):
      return f"unknown flag --{found.group(1)}: the off form of --{name} is --no{name}"
  found = _NOT_A_NUMBER.match(str(e))
  if not found:
    return str(e)
  name, value, kind = found.groups()
  return f"--{name} takes {'an integer' if 'int' in kind else 'a number'}, got {value!r}"


def run(main: Callable[[list[str]], int | None]) -> None:
  """absl's app.run, quiet unless --verbose, with input errors printed as one line (exit 2), a
  bug's traceback and saved log (exit 1), Ctrl-C as exit 130 and SIGTERM as exit 143, both
  after every temp file is removed."""
  tool = pathlib.Path(sys.argv[0]).stem
  if tool == "__main__":
    tool = pathlib.Path(sys.argv[0]).parent.name

  def guarded(argv):
    if not _VERBOSE.value:
      console.capture()
    # SIGTERM (`timeout`, a service manager, a CI runner's cancel) unwinds like Ctrl-C, so every
    # atomic write removes its temp file; Python's default would end the process on the spot.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    from litezoo.artifacts import files  # pylint: disable=g-import-not-at-top
    try:
      return main(argv)
    except ZooError as e:
      files.remove_empty_created_dirs()  # an --output_dir made before the refusal
      console.log(f"{tool}: error: {e}")
      return 2
    except Terminated:
      console.pending.clear()
      files.remove_empty_created_dirs()
      console.log(f"{tool}: terminated; nothing partial was left behind")
      return 143
    except KeyboardInterrupt:
      console.pending.clear()
      files.remove_empty_created_dirs()
      console.log(f"{tool}: interrupted; nothing partial was left behind")
      return 130
    except Exception as e:  # pylint: disable=broad-except
      if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        # Not a bug: the machine's disk. Every atomic write has removed its temp file by now.
        files.remove_empty_created_dirs()
        where = f" writing {e.filename}" if e.filename else ""
        console.log(f"{tool}: error: no space left on the device{where}: free some, or choose "
                    "another --output_dir (converted files are cached under $LITEZOO_CACHE, "
                    "default ~/.cache/litezoo); nothing partial was left behind")
        return 1
      files.remove_empty_created_dirs()  # a bug too leaves no empty --output_dir behind
      console.log(traceback.format_exc().rstrip())
      saved = files.cache_root() / "logs" / f"{tool}-{time.strftime('%Y%m%d-%H%M%S')}.log"
      saved.parent.mkdir(parents=True, exist_ok=True)
      if console.save_log(saved):
        console.log(f"{tool}: this is a bug; the libraries' output is in {saved}")
      return 1

  def parse(argv):
    # absl's own parser prints "FATAL Flags parsing error" and a second line of advice.
    try:
      rest = flags.FLAGS(argv)
    except SystemExit as e:
      # absl's --help, --helpshort and --helpfull print the usage, then exit 1: asked-for help
      # is a success.
      sys.exit(0 if e.code == 1 else e.code)
    except flags.Error as e:
      sys.stderr.write(f"{tool}: error: {_flag_error(e)} (--helpshort lists the flags)\n")
      sys.exit(2)
    if len(rest) > 1:  # no tool takes positional arguments: a stray word is a mistake
      sys.stderr.write(f"{tool}: error: unexpected argument {rest[1]!r}: every option is a "
                       "--flag=value (--helpshort lists the flags)\n")
      sys.exit(2)
    return rest

  app.run(guarded, flags_parser=parse)
