"""A checkpoint is a model: `--checkpoint=DIR` (or a .gguf) without `--model` reads the model type
and hyper-parameters from the checkpoint, picks the family and converts; what the zoo cannot build
is refused in one line naming the model type (with those it builds) or the field."""

import json

import pytest

from litezoo import families, pipeline
from litezoo.core.spec import UnsupportedConfigError
from litezoo.sources import random_weights
from litezoo.tests import family_configs, testing


def _checkpoint(tmp_path, name, **changes):
  directory = tmp_path / name
  testing.write_checkpoint({**family_configs.TINY[name], **changes}, directory)
  return directory


def test_checkpoint_spec_reads_the_family_and_defaults(tmp_path):
  spec = pipeline.checkpoint_spec(_checkpoint(tmp_path, "qwen2"), log=lambda _: None)
  assert spec.name == "qwen2" and spec.family.name == "qwen2"
  assert list(spec.variants) == [pipeline.CHECKPOINT_VARIANT]
  assert spec.signatures.kv_cache_max_len == 1024 and spec.default_recipe == "dynamic_int8"
  assert "architectures" not in spec.variant(None).config


def test_every_family_config_picks_its_family():
  expected = {"llama3": "llama", "ministral": "mistral", "qwen2_sliding": "qwen2",
              "phi3_longrope": "phi3"}
  for name, config in family_configs.TINY.items():
    family = families.by_model_type(config["model_type"])
    assert family.name == expected.get(name, name)
    family.config(config)
  assert len({t for f in families.FAMILIES for t in f.model_types}) >= 12


def test_a_checkpoint_generates_and_converts_like_a_plugin_model(tmp_path):
  """`generate --checkpoint=DIR` on a Qwen3 directory as a user has it (config, weights,
  tokenizer): converted on first use, and the text is transformers' own greedy continuation.
  `convert --checkpoint=DIR` then writes it as a model of its own, from the same cached
  conversion (one conversion for both: they take seconds each)."""
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  directory = _checkpoint(tmp_path, "qwen3")
  random_weights.write_tokenizer(directory, family_configs.TINY["qwen3"]["vocab_size"])
  flags = ("--quantize=none", "--prefill_seq_lens=8", "--kv_cache_max_len=32")
  env = {"LITEZOO_CACHE": str(tmp_path / "cache")}
  run = testing.run_tool("generate", f"--checkpoint={directory}", "--prompt=hello world",
                         "--max_new_tokens=8", *flags, cwd=tmp_path, env=env)
  assert run.returncode == 0, run.stderr[-3000:]
  assert "converting qwen3-checkpoint (none) on first use" in run.stderr
  tok = transformers.AutoTokenizer.from_pretrained(directory)
  model = transformers.AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
  prompt = tok("hello world", return_tensors="pt").input_ids
  out = model.generate(prompt, max_new_tokens=8, do_sample=False, pad_token_id=0)
  expected = tok.decode(out[0, prompt.shape[1]:])
  assert expected.strip() and run.stdout.rstrip("\n") == expected

  run = testing.run_tool("convert", f"--checkpoint={directory}", *flags, "--output_dir=out",
                         cwd=tmp_path, env=env)
  assert run.returncode == 0, run.stderr[-3000:]
  assert "converting" not in run.stderr  # generate's conversion, taken from the cache
  (manifest,) = (tmp_path / "out").glob("*.json")
  written = json.loads(manifest.read_text())
  assert written["model"] == "qwen3" and written["variant"] == "checkpoint"
  assert (tmp_path / "out" / written["file"]).stat().st_size > 0


def test_a_config_without_model_type_says_so(tmp_path):
  (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 64}))
  with pytest.raises(UnsupportedConfigError, match="^the config has no model_type, which names "
                     "the architecture; the zoo builds: "):
    pipeline.checkpoint_spec(tmp_path, log=lambda _: None)


def test_an_unknown_model_type_is_refused_listing_the_buildable_ones(tmp_path):
  directory = tmp_path / "gpt2"
  directory.mkdir()
  (directory / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_layer": 2}))
  run = testing.run_tool("convert", f"--checkpoint={directory}", "--output_dir=out",
                         cwd=tmp_path)
  line = testing.one_line_error(run, "convert")
  assert "model_type 'gpt2' is not one the zoo can build; it builds: " in line
  for model_type in ("gemma2", "llama", "phi3", "qwen2", "qwen3", "smollm3", "olmo2"):
    assert model_type in line


@pytest.mark.parametrize("name, changes, field", [
    ("llama3", dict(rope_scaling=dict(rope_type="yarn", factor=4.0,
                                      original_max_position_embeddings=64)), "rope_scaling"),
    ("llama3", dict(rope_scaling=dict(rope_type="dynamic", factor=4.0)), "rope_scaling"),
    ("qwen2", dict(num_experts=4), "num_experts"),
    ("mistral", dict(num_local_experts=8), "num_local_experts"),
    ("gemma2", dict(use_bidirectional_attention=True), "use_bidirectional_attention"),
    ("olmo2", dict(sliding_window=8), "sliding_window"),
    ("granite", dict(attn_logit_softcapping=30.0), "attn_logit_softcapping"),
    # A trial found a context of 0 failing in the converter's assertions, and -1 layers reported
    # as unused tensors.
    ("llama3", dict(max_position_embeddings=0), "max_position_embeddings=0 in the llama config: "
     "it must be a whole number of at least 1"),
    ("llama3", dict(num_hidden_layers=-1), "num_hidden_layers=-1 in the llama config: it must be"),
    ("gemma2", dict(intermediate_size=0), "intermediate_size=0 in the gemma2 config"),
    # transformers takes these; RoPE would then be nonsense.
    ("llama3", dict(rope_theta=-5.0), "rope_theta=-5.0: RoPE's base must be above 0"),
    ("llama3", dict(rms_norm_eps=float("nan")), "rms_norm_eps=NaN in the llama config"),
    ("llama3", dict(rope_scaling=dict(rope_type="linear", factor=-2.0)),
     "rope_scaling={'rope_type': 'linear', 'factor': -2.0}: its factor must be a number above 0"),
    # transformers' own refusal named the other key (rope_parameters).
    ("llama3", dict(rope_scaling="linear"), "rope_scaling='linear' in the llama config: it must "
     'be an object such as {"rope_type": "linear", "factor": 2.0}, or null for plain RoPE'),
])
def test_a_field_the_family_does_not_implement_or_cannot_be_is_refused_by_name(
    tmp_path, name, changes, field):
  directory = tmp_path / name
  directory.mkdir()
  (directory / "config.json").write_text(
      json.dumps({**family_configs.TINY[name], **changes}))
  with pytest.raises(UnsupportedConfigError) as e:
    pipeline.checkpoint_spec(directory, log=lambda _: None)
  assert str(e.value).startswith(field if " " in field else f"{field}=")


def test_a_long_transformers_refusal_is_cut_at_a_word_and_keeps_the_field(tmp_path):
  directory = tmp_path / "m"
  directory.mkdir()
  (directory / "config.json").write_text(
      json.dumps({**family_configs.TINY["llama3"], "attention_dropout": "x"}))
  with pytest.raises(UnsupportedConfigError) as e:
    pipeline.checkpoint_spec(directory, log=lambda _: None)
  text = str(e.value)
  assert text.startswith("transformers refuses this llama config: Validation error for field "
                         "'attention_dropout'")
  assert text.endswith(" ...") and len(text) < 400


def test_the_tools_refuse_a_field_in_one_line(tmp_path):
  directory = tmp_path / "m"
  directory.mkdir()
  (directory / "config.json").write_text(
      json.dumps({**family_configs.TINY["qwen2"], "num_experts": 4}))
  line = testing.one_line_error(
      testing.run_tool("generate", f"--checkpoint={directory}", "--prompt=hi"), "generate")
  assert "num_experts=4: the qwen2 family does not implement this field" in line


def test_a_longrope_kv_cache_past_the_original_context_is_refused(tmp_path):
  directory = _checkpoint(tmp_path, "phi3_longrope")
  run = testing.run_tool("convert", f"--checkpoint={directory}", "--quantize=none",
                         "--prefill_seq_lens=8", "--kv_cache_max_len=128", "--output_dir=out",
                         cwd=tmp_path)
  assert testing.one_line_error(run, "convert").endswith(
      "pass --kv_cache_max_len=64 or less")


@pytest.mark.parametrize("args, message", [
    ((), "give --model=NAME or --checkpoint=DIR"),
    (("--variant=tiny", "--checkpoint=CKPT"), "--variant applies to a registered --model"),
    (("--checkpoint=nowhere",), "nowhere does not exist"),
])
def test_selection_errors_are_one_line(tmp_path, args, message):
  directory = _checkpoint(tmp_path, "olmo2")
  args = [a.replace("CKPT", str(directory)) for a in args]
  line = testing.one_line_error(testing.run_tool("convert", *args, "--output_dir=out",
                                                 cwd=tmp_path), "convert")
  assert message in line


def test_a_directory_without_config_is_refused_with_the_fix(tmp_path):
  directory = tmp_path / "weights-only"
  directory.mkdir()
  (directory / "model.safetensors").write_bytes(b"")
  line = testing.one_line_error(testing.run_tool("convert", f"--checkpoint={directory}",
                                                 cwd=tmp_path), "convert")
  assert "has no config.json" in line and "--model=NAME" in line
  (tmp_path / "weights.bin").write_bytes(b"\0" * 64)
  line = testing.one_line_error(testing.run_tool("convert", f"--checkpoint={tmp_path}/weights.bin",
                                                 cwd=tmp_path), "convert")
  assert line.startswith(f"convert: error: {tmp_path}/weights.bin is a single file but not a "
                         ".gguf, so the zoo cannot tell what model it holds") and "--model=NAME" in line


def test_the_benchmark_takes_a_checkpoint_as_the_model_not_beside_one(tmp_path):
  """benchmark makes its own random weights: --checkpoint there names the model by its config."""
  directory = _checkpoint(tmp_path, "granite")
  line = testing.one_line_error(
      testing.run_tool("benchmark", "--model=tinyllama", f"--checkpoint={directory}",
                       "--peers=zoo", cwd=tmp_path), "benchmark")
  assert "give --model or --checkpoint, not both" in line


def test_a_size_config_json_leaves_out_is_named_not_defaulted(tmp_path):
  """transformers would fill in hidden_size=4096 for qwen2, and the checkpoint's shapes would
  then contradict it, far from the cause (a trial)."""
  directory = tmp_path / "qwen2"
  directory.mkdir()
  config = dict(family_configs.TINY["qwen2"])
  del config["hidden_size"]
  (directory / "config.json").write_text(json.dumps(config))
  with pytest.raises(UnsupportedConfigError, match=r"^the qwen2 config has no 'hidden_size' "
                     r"\(transformers would assume 4096, a guess that decides every shape\)$"):
    pipeline.checkpoint_spec(directory, log=lambda _: None)


@pytest.mark.parametrize("hidden, message", [
    # A trial: torch's "Storage size calculation overflowed" came out as a traceback.
    (10**12, "the config's sizes make a tensor too large to exist (Storage size calculation "
     "overflowed"),
    # Checked on the meta device before the model is allocated (16x the memory here).
    (256, "shape mismatch for model.embed_tokens.weight: the model expects [256, 256], the "
     "checkpoint has model.embed_tokens.weight [256, 64]"),
])
def test_config_sizes_the_checkpoint_contradicts_are_one_line(tmp_path, hidden, message):
  directory = _checkpoint(tmp_path, "qwen2")
  config = json.loads((directory / "config.json").read_text())
  assert config["hidden_size"] == 64 and config["vocab_size"] == 256
  (directory / "config.json").write_text(json.dumps({**config, "hidden_size": hidden}))
  line = testing.one_line_error(testing.run_tool("convert", f"--checkpoint={directory}",
                                                 "--quantize=none", f"--output_dir={tmp_path}"),
                                "convert")
  assert message in line
