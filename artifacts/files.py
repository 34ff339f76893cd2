"""Files the zoo writes: atomically (temp file, fsync, rename), under one cache root, hashed once.

A temp file is `.<name>.<random>.partial` beside its target, locked (flock) by the process writing
it. A process killed mid-write leaves its temp file unlocked (the kernel drops the lock), and the
next write of the same target deletes it; a live writer's temp file is never touched.
"""

import contextlib
import fcntl
import hashlib
import json
import os
import pathlib
import struct
import tempfile
from typing import Any, Iterator

from litezoo.core.errors import ZooError

def cache_root() -> pathlib.Path:
  """Where the zoo keeps what it makes once and reuses: `$LITEZOO_CACHE`, else
  ~/.cache/litezoo. Converted models, random checkpoints, joined weight files, tokenizers and
  XNNPACK weight caches live under it.

  An empty `$LITEZOO_CACHE` means unset (not the working directory, which `Path("")` would be);
  a relative one is taken from where the user ran the tool (`bazel run` changes directory).
  """
  value = os.environ.get("LITEZOO_CACHE", "").strip()
  if not value:
    return pathlib.Path.home() / ".cache" / "litezoo"
  path = pathlib.Path(os.path.expanduser(value))
  if not path.is_absolute():
    path = pathlib.Path(os.environ.get("BUILD_WORKING_DIRECTORY", os.getcwd()), path)
  return path


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 24) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    while block := f.read(chunk):
      digest.update(block)
  return digest.hexdigest()


class OutputError(ZooError, OSError):
  pass


class ArtifactError(ZooError, ValueError):
  """An artifact that fails its checks: missing manifest, wrong sha256, not a LiteRT model."""


def artifact_name(model: str, variant: str, recipe_tag: str, kv_cache_max_len: int) -> str:
  """`<model>-<variant>_<recipe tag>_ekv<N>.tflite`, litert-torch's naming."""
  return f"{model}-{variant}_{recipe_tag}_ekv{kv_cache_max_len}.tflite"


# Directories ensure_writable_dir made in this process, outermost first: a tool that then fails
# removes those still empty (remove_empty_created_dirs), so a refusal leaves nothing behind.
CREATED_DIRS: list[pathlib.Path] = []


def ensure_writable_dir(path: str | os.PathLike, flag: str = "output_dir") -> pathlib.Path:
  """Creates `path` if needed and proves it writable, before any expensive work starts. `flag`
  names the option that chose it, in the error (OutputError)."""
  path = pathlib.Path(path)
  for place in (path, *path.parents):  # the nearest that exists: it must be a directory
    if place.exists():
      if not place.is_dir():
        what = (f"{path} is a file" if place == path
                else f"{path} cannot be made inside {place}, which is a file")
        raise OutputError(f"output directory {what}, not a directory; choose another with "
                          f"--{flag}")
      break
  missing = [p for p in [path, *path.parents] if not p.exists()][::-1]
  try:
    path.mkdir(parents=True, exist_ok=True)
    CREATED_DIRS.extend(missing)
    with tempfile.NamedTemporaryFile(dir=path, prefix=".litezoo-probe-"):
      pass
  except OSError as e:
    raise OutputError(f"output directory {path} is not writable ({e.strerror or e}); "
                      f"choose another with --{flag}") from e
  return path


def remove_empty_created_dirs() -> None:
  """Removes the directories ensure_writable_dir created that are still empty, innermost first."""
  for path in reversed(CREATED_DIRS):
    try:
      path.rmdir()  # only when empty
    except OSError:
      pass
  CREATED_DIRS.clear()


PARTIAL = ".partial"


def _locked_temp(directory: pathlib.Path, prefix: str) -> tuple[int, pathlib.Path]:
  """A new temp file and an fd holding its lock for as long as this process keeps it open."""
  remove_stale_partials(directory, prefix)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=prefix + ".", suffix=".locking")
  fcntl.flock(fd, fcntl.LOCK_EX)
  # Renamed only once locked: the cleaner below never sees a live writer's file unlocked.
  partial = pathlib.Path(tmp).with_suffix(PARTIAL)
  os.rename(tmp, partial)
  return fd, partial


def remove_stale_partials(directory: str | os.PathLike, prefix: str) -> list[pathlib.Path]:
  """Deletes `<prefix>.*.partial` temp files in `directory` that no live process holds."""
  removed = []
  for partial in pathlib.Path(directory).glob(f"{prefix}.*{PARTIAL}"):
    with contextlib.suppress(OSError):
      with open(partial, "rb") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)  # fails while its writer lives
        partial.unlink()
        removed.append(partial)
  return removed


def _fsync_dir(directory: pathlib.Path) -> None:
  """Makes a rename durable: the directory entry reaches the disk, not just the file."""
  with contextlib.suppress(OSError):
    fd = os.open(directory, os.O_RDONLY)
    try:
      os.fsync(fd)
    finally:
      os.close(fd)


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[pathlib.Path]:
  """Yields a temp path beside `final`; renames it onto `final` only if the block succeeds.

  On any exception, Ctrl-C included, the temp file is removed and `final` is untouched; on
  SIGKILL the temp file stays, unlocked, until the next write of `final` removes it.
  """
  final = pathlib.Path(final)
  if final.is_dir():  # the rename would fail only after the work, leaving a manifest behind
    raise OutputError(f"{final} is a directory, where the output file would go: move it away "
                      "or choose another output directory")
  fd, tmp = _locked_temp(final.parent, f".{final.name}")
  umask = os.umask(0)
  os.umask(umask)
  try:
    yield tmp
    with open(tmp, "rb+") as f:
      with contextlib.suppress(BlockingIOError):  # locked already, unless the block replaced it
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
      os.fsync(f.fileno())
      os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; the artifact gets normal permissions
      os.replace(tmp, final)
    _fsync_dir(final.parent)
  finally:
    tmp.unlink(missing_ok=True)
    os.close(fd)


@contextlib.contextmanager
def scratch_path(directory: str | os.PathLike, name: str) -> Iterator[pathlib.Path]:
  """A temp path in `directory` that is removed when the block ends, however it ends."""
  fd, tmp = _locked_temp(pathlib.Path(directory), name)
  try:
    yield tmp
  finally:
    tmp.unlink(missing_ok=True)
    os.close(fd)


def write_bytes(final: str | os.PathLike, data: bytes) -> None:
  with atomic_path(final) as tmp:
    tmp.write_bytes(data)


def write_json(final: str | os.PathLike, obj: Any) -> None:
  with atomic_path(final) as tmp:
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


TFLITE_IDENTIFIER = b"TFL3"


def check_tflite_header(head: bytes, size: int, name: str) -> None:
  """Refuses bytes that cannot start a LiteRT model: `head` is the first 8 bytes of a `size`-byte
  model named `name` in the message. The flatbuffer's identifier sits at bytes 4-8 and its root
  table offset (little-endian uint32, bytes 0-4) must point inside the model. Costs nothing; the
  runtime's own error for the same bytes is "Failed to build flatbuffer model".

  Raises ArtifactError (a ValueError) naming the problem."""
  if len(head) < 8 or head[4:8] != TFLITE_IDENTIFIER:
    raise ArtifactError(f"{name}: not a LiteRT model (no {TFLITE_IDENTIFIER.decode()} "
                        "identifier at byte 4)")
  (root,) = struct.unpack("<I", head[:4])
  if not 8 <= root < size:
    raise ArtifactError(f"{name}: not a LiteRT model (root table offset {root} outside the "
                        f"{size}-byte file)")


def check_tflite(path: str | os.PathLike, interpreter: bool = True) -> None:
  """Refuses a file that is not a LiteRT model: the flatbuffer's root offset and identifier
  (`check_tflite_header`), then (with `interpreter`) the LiteRT interpreter's flatbuffer verifier,
  which checks every table and vector against the file's bounds before anything reads them
  (0.3 s on a 150 MB file, so callers on every start skip it)."""
  path = pathlib.Path(path)
  try:
    with open(path, "rb") as f:
      head = f.read(8)
      size = os.fstat(f.fileno()).st_size
  except OSError as e:
    raise ArtifactError(f"{path}: cannot be read ({e.strerror or e})") from e
  check_tflite_header(head, size, str(path))
  if interpreter:
    from ai_edge_litert import interpreter as litert  # pylint: disable=g-import-not-at-top
    try:  # no delegates: checking must not pack (and so copy) every weight
      litert.Interpreter(
          model_path=str(path),
          experimental_op_resolver_type=litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    except (ValueError, RuntimeError) as e:
      reason = " ".join(str(e).split())[:300]
      raise ArtifactError(f"{path}: the LiteRT interpreter refuses it ({reason})") from e


def sha256_stamped(path: str | os.PathLike) -> str:
  """The sha256 of a file, hashed once: the digest is kept under the cache root with the file's
  size and modification time, and recomputed only when either changes. Checkpoints are read many
  times and changed rarely; a 4.4 GB file costs seconds to hash."""
  path = pathlib.Path(path).resolve()
  stat = path.stat()
  stamp = cache_root() / "hashes" / (hashlib.sha256(str(path).encode()).hexdigest()[:32] + ".json")
  key = {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
  try:
    saved = json.loads(stamp.read_text())
    if {k: saved.get(k) for k in key} == key and isinstance(saved.get("sha256"), str):
      return saved["sha256"]
  except (OSError, ValueError):
    pass
  digest = sha256_file(path)
  with contextlib.suppress(OSError):  # a read-only cache costs a re-hash next time, nothing else
    stamp.parent.mkdir(parents=True, exist_ok=True)
    write_json(stamp, {**key, "sha256": digest})
  return digest


@contextlib.contextmanager
def locked(path: str | os.PathLike) -> Iterator[None]:
  """Holds an exclusive lock on `path` (created if needed) for the block: processes making the
  same thing wait for each other and make it once.

  The lock file is removed on the way out, so a cache holds no lock files between uses (a killed
  holder leaves an empty one, which the next holder reuses and removes). Removing it is safe
  because a waiter that gets the lock checks that the path still names the file it locked and
  otherwise starts over: a lock taken on an unlinked file would exclude no one.
  """
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  while True:
    lock = open(path, "a")  # pylint: disable=consider-using-with  (closed below)
    try:
      fcntl.flock(lock, fcntl.LOCK_EX)
      with contextlib.suppress(FileNotFoundError):
        held, named = os.fstat(lock.fileno()), os.stat(path)
        if (held.st_dev, held.st_ino) == (named.st_dev, named.st_ino):
          break
    except BaseException:
      lock.close()
      raise
    lock.close()  # the holder before us removed it: lock the file now at `path`
  try:
    yield
  finally:
    with contextlib.suppress(FileNotFoundError):
      path.unlink()
    lock.close()  # closing releases the lock, after the unlink
