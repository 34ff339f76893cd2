"""Artifacts on disk: written atomically (temp file, fsync, rename), described by a manifest.

A temp file is `.<name>.<random>.partial` beside its target, locked (flock) by the process writing
it. A process killed mid-write leaves its temp file unlocked (the kernel drops the lock), and the
next write of the same target deletes it; a live writer's temp file is never touched.
"""

import contextlib
import fcntl
import json
import os
import pathlib
import struct
import tempfile
from typing import Any, Iterator

from litezoo.core.checkpoint import sha256_file
from litezoo.core.errors import ZooError

MANIFEST_SUFFIX = ".manifest.json"


class OutputError(ZooError, OSError):
  pass


class ArtifactError(ZooError, ValueError):
  """An artifact that fails its checks: missing manifest, wrong sha256, not a LiteRT model."""


def artifact_name(model: str, variant: str, recipe: str, kv_cache_max_len: int) -> str:
  return f"{model}-{variant}_{recipe}_ekv{kv_cache_max_len}.tflite"


def manifest_path(artifact: str | os.PathLike) -> pathlib.Path:
  artifact = pathlib.Path(artifact)
  return artifact.with_name(artifact.stem + MANIFEST_SUFFIX)


def ensure_writable_dir(path: str | os.PathLike) -> pathlib.Path:
  """Creates `path` if needed and proves it writable, before any expensive work starts."""
  path = pathlib.Path(path)
  try:
    path.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path, prefix=".litezoo-probe-"):
      pass
  except OSError as e:
    raise OutputError(f"output directory {path} is not writable ({e.strerror or e}); "
                      "choose another with --output_dir") from e
  return path


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


def read_manifest(artifact: str | os.PathLike) -> dict:
  return json.loads(manifest_path(artifact).read_text())


def verify(artifact: str | os.PathLike) -> bool:
  """True if the artifact exists and its bytes match its manifest's sha256."""
  artifact = pathlib.Path(artifact)
  try:
    return sha256_file(artifact) == read_manifest(artifact)["sha256"]
  except (OSError, ValueError, KeyError):
    return False


TFLITE_IDENTIFIER = b"TFL3"


def check_tflite(path: str | os.PathLike, interpreter: bool = True) -> None:
  """Refuses a file that is not a LiteRT model: the flatbuffer's root offset and identifier,
  then (with `interpreter`) the LiteRT interpreter's flatbuffer verifier, which checks every
  table and vector against the file's bounds before anything reads them."""
  path = pathlib.Path(path)
  try:
    with open(path, "rb") as f:
      head = f.read(8)
      size = os.fstat(f.fileno()).st_size
  except OSError as e:
    raise ArtifactError(f"{path}: cannot be read ({e.strerror or e})") from e
  if len(head) < 8 or head[4:8] != TFLITE_IDENTIFIER:
    raise ArtifactError(f"{path}: not a LiteRT model (no {TFLITE_IDENTIFIER.decode()} "
                        "identifier at byte 4)")
  (root,) = struct.unpack("<I", head[:4])
  if not 8 <= root < size:
    raise ArtifactError(f"{path}: not a LiteRT model (root table offset {root} outside the "
                        f"{size}-byte file)")
  if interpreter:
    from ai_edge_litert import interpreter as litert  # pylint: disable=g-import-not-at-top
    try:  # no delegates: checking must not pack (and so copy) every weight
      litert.Interpreter(
          model_path=str(path),
          experimental_op_resolver_type=litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    except (ValueError, RuntimeError) as e:
      reason = " ".join(str(e).split())[:300]
      raise ArtifactError(f"{path}: the LiteRT interpreter refuses it ({reason})") from e


def open_verified(artifact: str | os.PathLike, interpreter: bool = True) -> dict:
  """The manifest of an artifact whose bytes match it and that LiteRT accepts; else a clear error.

  The zoo's loaders call this before handing a file to a runtime: a flipped byte or a truncated
  copy is named as such instead of crashing (or silently misbehaving in) native code.
  """
  artifact = pathlib.Path(artifact)
  if not artifact.is_file():
    raise ArtifactError(f"{artifact} does not exist")
  try:
    manifest = read_manifest(artifact)
    expected_sha, expected_size = manifest["sha256"], manifest["size_bytes"]
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise ArtifactError(f"{artifact}: its manifest {manifest_path(artifact).name} is missing or "
                        f"unreadable ({type(e).__name__}); convert the model again") from e
  size = artifact.stat().st_size
  if size != expected_size:
    raise ArtifactError(f"{artifact} is {size} bytes, but its manifest says {expected_size}: "
                        "truncated or replaced; delete it and convert again")
  actual = sha256_file(artifact)
  if actual != expected_sha:
    raise ArtifactError(f"{artifact}: sha256 {actual} does not match its manifest's "
                        f"{expected_sha}: the file is corrupt or was changed; delete it and "
                        "convert again")
  check_tflite(artifact, interpreter)
  return manifest
