"""Generation on tiny variants: the LiteRT path gives PyTorch's greedy tokens through padded,
exact and chunked prefill; chat turns reuse the KV cache; sampling is seeded; limits are errors."""

import numpy as np
import pytest
import torch

from litezoo.core import cache, convert, generate, registry, runner, tokenizer
from litezoo.core.spec import Signatures
from litezoo.tests import testing

SPEC = registry.Registry().get("tinyllama")
SIGNATURES = Signatures((8, 16), 64)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  """A converted tiny model (float) and its PyTorch twin (same seeded random weights)."""
  directory = tmp_path_factory.mktemp("tiny")
  path = convert.convert(SPEC, "tiny", recipe="none", signatures=SIGNATURES,
                         output_dir=directory, log=lambda _: None).path
  torch.manual_seed(0)
  model = SPEC.build(SPEC.variant("tiny").config, SIGNATURES.kv_cache_max_len)
  return path, model


def _torch_greedy(model, context, steps):
  tokens = list(context)
  for _ in range(steps):
    tokens.append(int(testing.zoo_logits(model, tokens, SIGNATURES.kv_cache_max_len)[-1].argmax()))
  return tokens[len(context):]


@pytest.mark.parametrize("prompt_len", [3, 8, 16, 37])  # padded, exact, larger, chunked 16+16+5
def test_greedy_generation_matches_pytorch(tiny, prompt_len):
  path, model = tiny
  context = list(np.random.default_rng(prompt_len).integers(0, 256, prompt_len))
  session = generate.Session(runner.Runner(path), stop_ids=set())
  out, stats = session.generate([int(t) for t in context], 6)
  assert out == _torch_greedy(model, context, 6)
  assert stats.stopped_by == "max_new_tokens" and stats.generated_tokens == 6
  assert stats.prefill_tps > 0 and stats.decode_tps > 0


def test_a_second_turn_reuses_the_cache_and_equals_a_fresh_run(tiny):
  path, _ = tiny
  session = generate.Session(runner.Runner(path), stop_ids=set())
  first = [5, 6, 7, 8, 9]
  out1, _ = session.generate(first, 4)
  # The next turn's context: everything so far plus new tokens (as a chat template renders it).
  second = first + out1 + [10, 11, 12]
  out2, stats = session.generate(second, 5)
  assert stats.prompt_tokens == 4  # only the unfed tail: the last generated token and 3 new ones
  fresh, _ = generate.Session(runner.Runner(path), set()).generate(second, 5)
  assert out2 == fresh


def test_an_edited_history_rewinds_the_cache(tiny):
  path, _ = tiny
  session = generate.Session(runner.Runner(path), stop_ids=set())
  session.generate([5, 6, 7, 8, 9, 10], 3)
  out, stats = session.generate([5, 6, 7, 99], 3)  # diverges at position 3
  assert stats.prompt_tokens == 1
  assert out == generate.Session(runner.Runner(path), set()).generate([5, 6, 7, 99], 3)[0]


def test_stop_tokens_end_generation(tiny):
  path, model = tiny
  expected = _torch_greedy(model, [1, 2, 3], 4)
  out, stats = generate.Session(runner.Runner(path), {expected[2]}).generate([1, 2, 3], 10)
  assert out == expected[:2] and stats.stopped_by == "stop token"


def test_sampling_is_seeded_and_top_k_1_is_greedy(tiny):
  path, model = tiny

  def run(sampling):
    return generate.Session(runner.Runner(path), set()).generate([4, 5, 6], 12, sampling)[0]

  hot = generate.Sampling(temperature=5.0, seed=1)
  assert run(hot) == run(hot)
  assert run(hot) != run(generate.Sampling(temperature=5.0, seed=2))
  assert run(generate.Sampling(temperature=5.0, top_k=1)) == _torch_greedy(model, [4, 5, 6], 12)
  nucleus = generate.Sampling(temperature=1.0, top_p=1e-9, seed=3)  # only the top token left
  assert run(nucleus) == _torch_greedy(model, [4, 5, 6], 12)


def test_sample_follows_the_distribution():
  logits = np.log(np.array([0.5, 0.3, 0.2]))
  rng = np.random.default_rng(0)
  draws = [generate.sample(logits, generate.Sampling(temperature=1.0), rng) for _ in range(4000)]
  np.testing.assert_allclose(np.bincount(draws, minlength=3) / 4000, [0.5, 0.3, 0.2], atol=0.03)
  top2 = [generate.sample(logits, generate.Sampling(1.0, top_k=2), rng) for _ in range(500)]
  assert set(top2) == {0, 1}


@pytest.mark.parametrize("kwargs, message", [
    (dict(context=list(range(64)), max_new_tokens=4),
     "the prompt take 64 tokens, but the KV cache holds 64"),
    (dict(context=[1, 2], max_new_tokens=0), "max_new_tokens must be positive, got 0"),
    (dict(context=[1, 2], max_new_tokens=4, sampling=generate.Sampling(temperature=-1)),
     "temperature must be >= 0, got -1"),
    (dict(context=[1, 2], max_new_tokens=4, sampling=generate.Sampling(top_p=0)),
     "top_p must be in (0, 1], got 0"),
    (dict(context=[], max_new_tokens=4), "the prompt is empty"),
])
def test_limits_are_clear_errors(tiny, kwargs, message):
  with pytest.raises(generate.GenerationError) as e:
    generate.Session(runner.Runner(tiny[0]), set()).generate(**kwargs)
  assert str(e.value).startswith(message)


def test_generation_stops_when_the_cache_is_full(tiny):
  out, stats = generate.Session(runner.Runner(tiny[0]), set()).generate(list(range(60)), 50)
  assert stats.stopped_by == "KV cache full" and len(out) == 5  # positions 60..63, plus one


def test_text_stream_never_splits_a_character():
  tok = tokenizer.ByteTokenizer()
  written = []
  stream = generate.TextStream(tok.decode, written.append)
  for token in tok.encode("né ✓"):
    stream(token)
  assert "".join(written) == "né ✓" and all("\ufffd" not in w for w in written)


def test_cli_converts_once_then_reuses_the_cached_artifact(tmp_path, monkeypatch):
  monkeypatch.setenv("LITEZOO_CACHE", str(tmp_path / "cache"))
  args = ("--model=tinyllama", "--variant=tiny", "--prompt=hello", "--max_new_tokens=5",
          "--kv_cache_max_len=64", "--prefill_seq_lens=8,16")
  first = testing.run_tool("generate", *args)
  assert first.returncode == 0, first.stderr[-3000:]
  assert "converting tinyllama-tiny (dynamic_int8) on first use" in first.stderr
  assert "decode 5 tokens at" in first.stderr
  second = testing.run_tool("generate", *args)
  assert second.returncode == 0 and "converting" not in second.stderr
  assert second.stdout == first.stdout  # greedy: the same text
  artifact = cache.artifact(SPEC, "tiny", signatures=Signatures((8, 16), 64),
                            log=lambda m: pytest.fail(m))  # cached: no conversion, no message
  assert artifact.exists()


@pytest.mark.parametrize("args, message", [
    (("--temperature=-1", "--prompt=x"), "temperature must be >= 0, got -1.0"),
    (("--max_new_tokens=0", "--prompt=x"), "--max_new_tokens must be positive, got 0"),
    ((), "give --prompt=TEXT, or --chat for a conversation"),
])
def test_cli_bad_options_are_one_line(args, message):
  result = testing.run_tool("generate", "--model=tinyllama", "--variant=tiny", *args)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1] == f"generate: error: {message}"
