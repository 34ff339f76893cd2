"""Checkpoint sources: pinned hub snapshots (sha256 checked, offline), pickles refused by default."""

import hashlib
import json
import os
import pathlib
import socket
import types

import huggingface_hub
import pytest
import torch
from huggingface_hub import constants as hub_constants
from huggingface_hub.utils import _http as hub_http

from litezoo import sources
from litezoo.conversion import loader
from litezoo.core import registry
from litezoo.core.spec import HubPin, Variant
from litezoo.sources import pins, weights
from litezoo.tests import testing

SPEC = registry.Registry().get("tinyllama")
CONFIG = SPEC.variant("tiny").config
REPO = "litezoo-test/tiny-llama"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _sha256(path):
  return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


@pytest.fixture
def hub_cache(tmp_path):
  """A Hugging Face cache holding one snapshot, laid out exactly as huggingface-hub lays it out:
  blobs named by hash, snapshots/<commit>/<file> symlinks into them, refs/main."""
  source = tmp_path / "written"
  testing.write_checkpoint(CONFIG, source)
  cache = tmp_path / "hub"
  repo = cache / f"models--{REPO.replace('/', '--')}"
  (repo / "blobs").mkdir(parents=True)
  (repo / "snapshots" / COMMIT).mkdir(parents=True)
  (repo / "refs").mkdir()
  (repo / "refs" / "main").write_text(COMMIT)
  pins = {}
  for file in sorted(source.iterdir()):
    digest = _sha256(file)
    (repo / "blobs" / digest).write_bytes(file.read_bytes())
    os.symlink(f"../../blobs/{digest}", repo / "snapshots" / COMMIT / file.name)
    pins[file.name] = digest
  return cache, HubPin(REPO, COMMIT, pins)


@pytest.fixture
def no_network(monkeypatch):
  """Any attempt to open a connection fails the test and is counted."""
  attempts = []

  def refuse(*args, **kwargs):
    attempts.append(args)
    raise OSError("network access attempted in a test")

  monkeypatch.setattr(socket.socket, "connect", refuse)
  monkeypatch.setattr(socket, "create_connection", refuse)
  return attempts


@pytest.mark.parametrize("offline", [True, False])
def test_cached_pinned_snapshot_loads_with_zero_network_calls(hub_cache, no_network, monkeypatch,
                                                              offline):
  cache, pin = hub_cache
  monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", offline)
  snapshot = pins.fetch_pinned(pin, cache_dir=cache)
  assert snapshot == cache / f"models--{REPO.replace('/', '--')}" / "snapshots" / COMMIT
  model = testing.load(SPEC, CONFIG, snapshot)
  assert model is not None and no_network == []


def test_a_variant_with_a_pin_converts_from_the_hub_cache(hub_cache, no_network, monkeypatch,
                                                          tmp_path):
  cache, pin = hub_cache
  monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
  monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
  spec = SPEC.__class__(**{**SPEC.__dict__, "variants": {"pinned": Variant(CONFIG, source=pin)},
                           "default_variant": "pinned"})
  found = weights.resolve(spec, "pinned")
  assert found.path == pins.fetch_pinned(pin, cache)
  assert found.identity == {"kind": "pinned", "repo": REPO, "revision": COMMIT,
                            "files": dict(pin.sha256)}
  assert no_network == []


def test_wrong_sha256_is_refused_naming_file_and_both_hashes(hub_cache):
  cache, pin = hub_cache
  wrong = HubPin(REPO, COMMIT, {**pin.sha256, "config.json": "0" * 64})
  with pytest.raises(pins.PinError) as e:
    pins.fetch_pinned(wrong, cache_dir=cache)
  actual = pin.sha256["config.json"]
  assert (f"{REPO}@{COMMIT[:12]} file config.json: sha256 {actual} does not match the pinned "
          f"{'0' * 64}") in str(e.value)


@pytest.mark.parametrize("damage", ["swap", "truncate"])
def test_a_file_changed_after_pinning_is_refused(hub_cache, damage):
  cache, pin = hub_cache
  blob = cache / f"models--{REPO.replace('/', '--')}" / "blobs" / pin.sha256["model.safetensors"]
  data = blob.read_bytes()
  blob.write_bytes(data[:-100] if damage == "truncate" else data[:-1] + bytes([data[-1] ^ 1]))
  with pytest.raises(pins.PinError, match=r"file model\.safetensors: sha256 [0-9a-f]{64} "
                     r"does not match the pinned"):
    pins.fetch_pinned(pin, cache_dir=cache)


PINNED = [(name, variant) for name in registry.Registry().names()
          for variant, found in registry.Registry().get(name).variants.items()
          if isinstance(found.source, HubPin)]


def test_the_seed_models_are_pinned():
  assert {("tinyllama", "1.1b"), ("gemma", "2b-it"), ("gemma", "2b")} <= set(PINNED)
  gemma = registry.Registry().get("gemma")
  assert all(gemma.variant(v).source.gated for v in ("2b", "2b-it"))  # the error says so


@pytest.mark.parametrize("name, variant", PINNED)
def test_missing_from_cache_while_offline_says_how_to_get_it(name, variant, tmp_path,
                                                            monkeypatch, no_network):
  monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
  pin = registry.Registry().get(name).variant(variant).source
  with pytest.raises(pins.PinError) as e:
    pins.fetch_pinned(pin, cache_dir=tmp_path)
  snapshot = (tmp_path / f"models--{pin.repo_id.replace('/', '--')}" / "snapshots" / pin.revision)
  n = len(pin.sha256)
  assert str(e.value).startswith(
      f"{pin.repo_id}@{pin.revision[:12]}: {n} of {n} pinned files are not in the "
      f"Hugging Face cache at {snapshot} and the hub cannot be reached")
  assert ", ".join(sorted(pin.sha256)[:3]) in str(e.value)
  assert f"`hf download {pin.repo_id} --revision {pin.revision}`" in str(e.value)
  assert ("accept its licence on the hub" in str(e.value)) == pin.gated
  assert no_network == []


def test_an_unreachable_hub_is_tried_once_not_once_per_file(tmp_path, no_network, monkeypatch):
  """Without HF_HUB_OFFLINE, the first file that cannot be fetched makes the rest be looked for
  in the cache only: the hub is tried as often as for one file, not nine times."""
  monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
  # The hub client's own backoff sleeps 23 s per file between its retries; the tries are what
  # this test counts, not the waits.
  waits = []
  monkeypatch.setattr(hub_http, "time", types.SimpleNamespace(sleep=waits.append))
  pin = registry.Registry().get("gemma").variant("2b").source
  one = HubPin(pin.repo_id, pin.revision, {"config.json": pin.sha256["config.json"]})

  def tries(pinned, cache_dir):
    before = len(no_network)
    with pytest.raises(pins.PinError, match=rf"{len(pinned.sha256)} of {len(pinned.sha256)} "
                       "pinned files are not in the Hugging Face cache"):
      pins.fetch_pinned(pinned, cache_dir=cache_dir)
    return len(no_network) - before

  tries(one, tmp_path / "warm")  # the client's once-per-process probes, out of the counts
  assert 0 < tries(pin, tmp_path / "all") == tries(one, tmp_path / "one")
  assert waits  # the client did retry: the patch above took effect


@pytest.mark.parametrize("name, variant", PINNED)
def test_a_pin_covers_the_config_the_weights_and_the_tokenizer(name, variant):
  """A pinned snapshot holds everything a conversion reads: no unpinned file is trusted."""
  pinned = set(registry.Registry().get(name).variant(variant).source.sha256)
  assert "config.json" in pinned
  assert pinned & {"tokenizer.json", "tokenizer.model"}
  shards = {f for f in pinned if f.endswith(".safetensors")}
  assert shards and ("model.safetensors.index.json" in pinned or shards == {"model.safetensors"})


def test_pins_name_a_commit_not_a_branch():
  with pytest.raises(ValueError, match="pin a full commit sha, not 'main'"):
    HubPin(REPO, "main", {})
  assert huggingface_hub  # the hub client is the one installed from the lock file


class _Sentinel:
  """Unpickling this runs code: it creates a file. The attack a pickled checkpoint can carry."""

  def __init__(self, path):
    self.path = str(path)

  def __reduce__(self):
    return (pathlib.Path.touch, (pathlib.Path(self.path),))


def test_pickle_is_refused_by_default_and_nothing_runs(tmp_path):
  sentinel = tmp_path / "pwned"
  torch.save({"model.embed_tokens.weight": torch.zeros(2), "x": _Sentinel(sentinel)},
             tmp_path / "pytorch_model.bin")
  with pytest.raises(sources.CheckpointError) as e:
    sources.open_checkpoint(tmp_path)
  assert str(e.value).startswith(f"refusing to unpickle {tmp_path / 'pytorch_model.bin'}: "
                                 "loading a pickle can run arbitrary code")
  assert "--allow_pickle" in str(e.value)
  assert not sentinel.exists()


def test_allow_pickle_uses_weights_only_and_never_falls_back(tmp_path):
  sentinel = tmp_path / "pwned"
  torch.save({"x": _Sentinel(sentinel)}, tmp_path / "evil.pt")
  with pytest.raises(sources.CheckpointError, match=r"evil\.pt: refused by "
                     r"torch\.load\(weights_only=True\)"):
    sources.open_checkpoint(tmp_path / "evil.pt", allow_pickle=True)
  assert not sentinel.exists()


def test_allow_pickle_names_a_file_that_is_no_checkpoint(tmp_path):
  (tmp_path / "noise.bin").write_bytes(bytes(range(256)) * 64)
  with pytest.raises(sources.CheckpointError, match=r"noise\.bin: torch\.load\(weights_only=True\) "
                     r"cannot read it \(.+\); it is not a checkpoint written by torch\.save"):
    sources.open_checkpoint(tmp_path / "noise.bin", allow_pickle=True)


def test_allow_pickle_loads_a_plain_state_dict(tmp_path):
  reference = testing.random_model(CONFIG)
  torch.save(reference.state_dict(), tmp_path / "pytorch_model.bin")
  model = testing.build(SPEC, CONFIG, 16)
  loader.load(model, testing.names(SPEC, CONFIG),
              sources.open_checkpoint(tmp_path, allow_pickle=True))
  assert torch.equal(model.final_norm.weight, reference.model.norm.weight)


def test_a_pickled_checkpoint_of_another_model_is_named_not_converted(tmp_path):
  """A pickled directory's config.json is checked against the plugin's, as a safetensors
  directory's is; without one, extra KV heads are still named when the projections are fused
  (grouping by KV head would otherwise drop them)."""
  from litezoo.conversion import convert  # pylint: disable=g-import-not-at-top
  other = {**CONFIG, "num_key_value_heads": 4}
  torch.save(testing.random_model(other).state_dict(), tmp_path / "pytorch_model.bin")
  (tmp_path / "config.json").write_text(json.dumps(other))
  source = sources.open_checkpoint(tmp_path, allow_pickle=True)
  with pytest.raises(convert.ConfigMismatchError, match=r"has num_key_value_heads=4, but "
                     "tinyllama-tiny has num_key_value_heads=2"):
    convert.model_config(SPEC, "tiny", source, str(tmp_path))
  (tmp_path / "config.json").unlink()
  source = sources.open_checkpoint(tmp_path, allow_pickle=True)
  assert convert.model_config(SPEC, "tiny", source) == dict(CONFIG)  # nothing to check it against
  with pytest.raises(loader.LoadError, match=r"the checkpoint's query, key and value projections "
                     r"have 64, 64 and 64 rows, but the model's attention takes 64, 32 and 32 \(4 "
                     r"heads and 2 KV heads of 16\): it holds a different model"):
    loader.load(testing.build(SPEC, CONFIG, 16), testing.names(SPEC, CONFIG), source)


def test_allow_pickle_is_refused_for_a_checkpoint_that_is_no_pickle(tmp_path):
  """An option that cannot apply is refused, not ignored: safetensors and GGUF load without it."""
  testing.random_model(CONFIG).save_pretrained(tmp_path / "hf")
  with pytest.raises(sources.CheckpointError, match=r"^--allow_pickle applies only to a pickled "
                     r"checkpoint \(\.bin, \.pt, \.pth, \.ckpt files\); .*hf is safetensors, "
                     r"which loads without it: drop --allow_pickle$"):
    sources.open_checkpoint(tmp_path / "hf", allow_pickle=True)
  (tmp_path / "model.gguf").write_bytes(b"GGUF")
  with pytest.raises(sources.CheckpointError, match=r"model\.gguf is a GGUF file, which loads "
                     "without it"):
    sources.open_checkpoint(tmp_path / "model.gguf", allow_pickle=True)
  assert sources.open_checkpoint(tmp_path / "hf") is not None  # without the flag it loads


def test_an_edited_chat_template_is_read_again_and_a_broken_one_is_named(tmp_path):
  """The tokenizer kept under the cache root is keyed on the checkpoint's files, chat_template.jinja
  (where transformers 5 saves a template) included: an edited template is never served stale."""
  import shutil  # pylint: disable=g-import-not-at-top
  from litezoo import pipeline  # pylint: disable=g-import-not-at-top
  from litezoo.runtime import tokenizer as tokenizer_lib  # pylint: disable=g-import-not-at-top
  spec = registry.Registry().get("tinyllama")
  directory = tmp_path / "ckpt"
  shutil.copytree(pipeline.weights(spec, "tiny", log=lambda _: None).path, directory)
  template = directory / "chat_template.jinja"
  template.write_text("{% for m in messages %}{{ m.nope.deeper }}{% endfor %}")
  hi = [{"role": "user", "content": "hi"}]

  def tokenizer():
    return pipeline.tokenizer(weights.resolve(spec, "tiny", directory, log=lambda _: None))

  with pytest.raises(tokenizer_lib.TokenizerError,
                     match=r"^the model's chat template is broken.*; fix the template "
                           r"\(chat_template.jinja or tokenizer_config.json's chat_template\)$"):
    tokenizer().chat_text(hi)
  template.write_text("{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}")
  assert tokenizer().chat_text(hi) == "<user>hi"
  template.write_text("{% for m in messages %}{{ m.content }{% endfor %}")  # a syntax error
  with pytest.raises(tokenizer_lib.TokenizerError, match=r"chat template is broken \(line 1\)"):
    tokenizer().chat_text(hi)


def test_a_checkpoint_without_tokenizer_files_says_so(tmp_path):
  """transformers blames a missing sentencepiece or tiktoken for a directory with no tokenizer
  at all; the zoo names what is missing."""
  from litezoo.runtime import tokenizer as tokenizer_lib  # pylint: disable=g-import-not-at-top
  (tmp_path / "config.json").write_text("{}")
  with pytest.raises(tokenizer_lib.TokenizerError) as e:
    tokenizer_lib.load(tmp_path)
  (tmp_path / "tokenizer_config.json").write_text("{}")  # configures a tokenizer, holds none
  with pytest.raises(tokenizer_lib.TokenizerError) as e:
    tokenizer_lib.load(tmp_path)
  assert str(e.value) == (f"{tmp_path} holds no tokenizer (none of tokenizer.json, "
                          "tokenizer.model, vocab.json, spiece.model, tokenizer.tiktoken): copy "
                          "the model's tokenizer files beside its weights")
