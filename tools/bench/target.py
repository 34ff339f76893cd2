"""What one benchmark run measures (model, weights, signatures, protocol), and how a peer's
conversion is timed, recorded and reused."""

import dataclasses
import json
import pathlib
from typing import Callable

from litezoo.core.spec import ModelSpec
from litezoo.tools.bench import measure


class Skipped(Exception):
  """A peer that cannot run here; the message is the reason recorded in the results."""


@dataclasses.dataclass
class Target:
  spec: ModelSpec
  variant: str
  recipe: str
  config: dict  # the Hugging Face config.json of the variant
  checkpoint: pathlib.Path  # the random safetensors checkpoint every peer reads
  prefill_lengths: tuple[int, ...]
  kv_cache_max_len: int
  kv_layout: str  # of the zoo's conversion; the other peers have their own
  zoo_signatures: dict  # Signatures.as_dict() of the zoo's conversion (verify, windows)
  work: pathlib.Path  # converted files of this run, reused by the next one
  plan: measure.Plan
  seed: int = 0  # of the random weights
  decode_read_fraction: float = 1.0  # the share of the weights a decode step reads
  reconvert: bool = False
  llamacpp_dir: pathlib.Path | None = None
  config_source: str | None = None  # the checkpoint whose config is the model (no plugin)
  log: Callable[[str], None] = measure.log

  @property
  def name(self) -> str:
    return f"{self.spec.name}-{self.variant}"

  def vocab(self) -> int:
    return int(self.config["vocab_size"])


def spec_of(args: dict) -> ModelSpec:
  """The ModelSpec a peer's process works on: the registered model, or the one read from the
  checkpoint whose config is the model (`config_source`)."""
  # pylint: disable=g-import-not-at-top
  if args.get("config_source"):
    from litezoo import pipeline
    return pipeline.checkpoint_spec(args["config_source"], log=measure.log)
  from litezoo.core.registry import default_registry
  return default_registry().get(args["model"])


def _record_path(artifact: pathlib.Path) -> pathlib.Path:
  return artifact.with_name(artifact.name + ".conversion.json")


def converted(target: Target, artifact: pathlib.Path,
              convert: Callable[[], measure.Finished], what: str) -> dict:
  """Runs `convert` (a measured subprocess that writes `artifact`) unless an earlier run left the
  artifact and its record; returns the conversion record (seconds, peak RSS, reused)."""
  record_path = _record_path(artifact)
  if artifact.exists() and record_path.exists() and not target.reconvert:
    target.log(f"reusing {artifact} ({what}, converted by an earlier run)")
    return {**json.loads(record_path.read_text()), "reused": True}
  target.log(f"converting: {what} -> {artifact}")
  done = convert()
  if done.returncode != 0 or not artifact.exists():
    tail = " | ".join(done.stdout.strip().splitlines()[-3:])
    raise RuntimeError(f"{what} failed (exit {done.returncode}){': ' + tail if tail else ''}")
  record = {"seconds": round(done.seconds, 2), "peak_rss_bytes": done.peak_rss_bytes}
  record_path.write_text(json.dumps(record))
  peak = "unknown" if done.peak_rss_bytes is None else f"{done.peak_rss_bytes / 2**30:.2f} GiB"
  target.log(f"converted {what} in {done.seconds:.1f} s, peak RSS {peak}")
  return {**record, "reused": False}


def artifact_info(path: pathlib.Path, kind: str) -> dict:
  return {"path": str(path), "format": kind, "size_bytes": path.stat().st_size}
