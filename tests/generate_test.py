"""Generation on tiny variants: the LiteRT path gives PyTorch's greedy tokens through padded,
exact and chunked prefill; speculative decoding (prompt lookup + verify_<k>) gives plain greedy's
tokens exactly and, sampling, the model's own distribution (chi-square against a Markov model);
chat turns reuse the KV cache, and a refused turn leaves the conversation as it was; sampling is
seeded; limits and options that cannot apply are errors."""

import dataclasses
import json
import re

import numpy as np
import pytest

from litezoo import pipeline
from litezoo.core import registry
from litezoo.runtime import generate, runner
from litezoo.tests import serving, testing

SPEC = registry.Registry().get("tinyllama")
# The suites' shared signatures (//tests:tinyllama_tiny_float holds them converted), as flags.
SIGNATURES, CLI = testing.TINY_SIGNATURES, testing.TINY_FLAGS
DRAFT_SIGNATURES = dataclasses.replace(SIGNATURES, verify_lengths=(), verify_windows=())
# The chat model's: prefill and decode only (a conversation uses nothing else).
CHAT_CLI = ("--prefill_seq_lens=8,16", "--kv_cache_max_len=64", "--verify_lengths=none",
            "--decode_windows=none")
# The chat model's plain-text template, refusing a system message.
NO_SYSTEM = ("{% if messages[0].role == 'system' %}{{ raise_exception('System role not "
             "supported') }}{% endif %}" + serving.CHAT_TEMPLATE)


# One fresh artifact cache for the module (autouse): CLI runs reuse the fixtures' float files.
module_artifact_cache = testing.module_artifact_cache


@pytest.fixture(scope="module")
def tiny():
  """A converted tiny model (float) and its PyTorch twin (the same random weights)."""
  weights = pipeline.weights(SPEC, "tiny", log=lambda _: None)
  artifact = pipeline.artifact(SPEC, "tiny", weights, recipe="none", signatures=SIGNATURES,
                               log=lambda _: None)
  _, model = pipeline.original_and_ours(SPEC, "tiny", weights, SIGNATURES.kv_cache_max_len,
                                        log=lambda _: None)
  return artifact.path, model


@pytest.fixture(scope="module")
def chat_checkpoint(tmp_path_factory):
  """A local checkpoint of a tiny chat model: random weights written by transformers, a tokenizer
  with a chat template (what a user's fine-tuned checkpoint directory holds)."""
  return serving.write_chat_checkpoint(tmp_path_factory.mktemp("chat"))


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


def test_the_stats_line_gives_no_rate_when_no_decode_step_ran():
  """A trial: a prompt that left one slot in the cache printed "decode 1 tokens at 0.0 tok/s"."""
  one = generate.Stats(prompt_tokens=63, prefill_seconds=0.5, generated_tokens=1,
                       stopped_by="KV cache full")
  assert one.line() == ("prefill 63 tokens at 126.0 tok/s, 1 token, from the prefill's logits "
                        "(no decode step) (KV cache full)")
  three = generate.Stats(prompt_tokens=4, prefill_seconds=0.5, generated_tokens=3,
                         decode_seconds=0.5, stopped_by="max_new_tokens")
  assert three.line() == ("prefill 4 tokens at 8.0 tok/s, decode 3 tokens at 4.0 tok/s "
                          "(max_new_tokens)")


def test_prompt_lookup_drafts_the_continuation_of_the_latest_match():
  history = [1, 2, 3, 9, 1, 2, 3, 7, 8, 5, 1, 2, 3]
  assert generate.prompt_lookup(history, 3) == [7, 8, 5]  # the latest 1 2 3, not the first
  assert generate.prompt_lookup(history, 1) == [7]
  # A 1-gram match, its continuation copied on past the end, as the text repeats.
  assert generate.prompt_lookup([4, 5, 6, 5], 4, ngram_min=1) == [6, 5, 6, 5]
  assert generate.prompt_lookup([4, 5, 6, 5], 4, ngram_min=2) == []
  assert generate.prompt_lookup([1, 2, 3], 4) == []
  assert generate.prompt_lookup(history, 0) == []
  # Text repeating every 3 tokens: the latest match is followed by only 3 tokens, and the draft
  # goes on as the text does, to the 5 asked for.
  assert generate.prompt_lookup([5, 6, 7] * 3 + [5, 6], 5) == [7, 5, 6, 7, 5]


@pytest.mark.parametrize("prompt_len", [3, 12, 37])
def test_speculative_greedy_gives_plain_greedy_tokens(tiny, prompt_len):
  """A repetitive prompt, so drafts are made and some accepted: the output is token for token
  plain greedy's (itself checked against PyTorch above), up to the limit or the cache end (37)."""
  path, _ = tiny
  rng = np.random.default_rng(prompt_len)
  phrase = [int(t) for t in rng.integers(0, 256, 5)]
  context = (phrase * 8)[:prompt_len]
  plain, plain_stats = generate.Session(runner.Runner(path), set()).generate(context, 40)
  fast, stats = generate.Session(runner.Runner(path), set()).generate(
      context, 40, speculative=generate.PromptLookup(ngram_min=1))
  assert fast == plain and stats.stopped_by == plain_stats.stopped_by
  assert stats.verify_calls > 0 and stats.accepted > 0
  assert "draft tokens accepted" in stats.line()


def test_speculative_turns_reuse_the_cache_like_plain_ones(tiny):
  path, _ = tiny
  lookup = generate.PromptLookup(draft_tokens=3)
  session = generate.Session(runner.Runner(path), stop_ids=set())
  first = [5, 6, 7, 8, 5, 6, 7]
  out1, _ = session.generate(first, 6, speculative=lookup)
  second = first + out1 + [5, 6]
  out2, stats = session.generate(second, 6, speculative=lookup)
  # At most the unfed tail (the last token and 5 6): drafts accepted past the limit stay cached,
  # and may match what follows.
  assert 1 <= stats.prompt_tokens <= 3
  fresh, _ = generate.Session(runner.Runner(path), set()).generate(second, 6)
  assert out2 == fresh


def test_speculative_options_that_cannot_apply_are_refused(tiny, tmp_path):
  session = generate.Session(runner.Runner(tiny[0]), set())
  with pytest.raises(generate.GenerationError, match=r"draft_tokens=8 is more than verify_8 "
                     r"scores after the pending token \(7\): ask for at most 7"):
    session.generate([1, 2], 4, speculative=generate.PromptLookup(draft_tokens=8))
  with pytest.raises(generate.GenerationError, match="1 <= ngram_min <= ngram_max"):
    session.generate([1, 2], 4, speculative=generate.PromptLookup(ngram_min=4))


class MarkovDecoder:
  """A model whose next-token logits depend only on the last token (`table[last]`), with the
  runner's KV-cache interface: the exact distribution of what it generates is known."""

  verify_lengths = (5,)
  kv_cache_max_len = 64

  def __init__(self, table: np.ndarray):
    self.table, self.position, self.tokens = table, 0, []

  def reset(self):
    self.position, self.tokens = 0, []

  def prefill(self, tokens, all_logits=False):
    del self.tokens[self.position:]  # rewound entries are overwritten
    self.tokens += tokens
    self.position += len(tokens)
    rows = self.table[tokens].astype(np.float32)
    return rows if all_logits else rows[-1:]

  def decode(self, token):
    return self.prefill([token])[0]

  def verify(self, tokens):
    return self.prefill(tokens, all_logits=True)


def _softmax(z):
  e = np.exp(z - z.max())
  return e / e.sum()


@pytest.mark.parametrize("top_k, drafter", [(0, "lookup"), (3, "lookup"), (0, "model"),
                                             (3, "model")])
def test_speculative_sampling_keeps_the_models_distribution(top_k, drafter):
  """Sampled speculation (drafts kept with probability min(1, p/q), else a draw from the
  residual) against the exact distribution of three tokens from a Markov model, computed here
  from its softmax: a chi-square test over 20,000 generations. Drafts come from the context
  (proposed with certainty) or from a draft model (another Markov model, its own distribution),
  nearly every step, and are both kept and refused."""
  from scipy import stats as scipy_stats  # pylint: disable=g-import-not-at-top
  vocab, steps, runs = 5, 3, 20_000
  rng = np.random.default_rng(top_k)
  table = rng.normal(0, 1.5, (vocab, vocab))
  table[np.arange(vocab), (np.arange(vocab) + 1) % vocab] += 2  # drafts (0 1 2 ...) often right
  probs = np.zeros((vocab, vocab))  # probs[a, b]: P(next = b | last = a)
  for a in range(vocab):
    keep = np.argsort(-table[a])[:top_k or vocab]
    probs[a, keep] = _softmax(table[a, keep])
  context = [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0]
  expected = np.ones((vocab,) * steps)
  last = context[-1]
  for index in np.ndindex(*expected.shape):
    for prev, token in zip((last,) + index[:-1], index):
      expected[index] *= probs[prev, token]
  counts = np.zeros_like(expected)
  session = generate.Session(MarkovDecoder(table), stop_ids=set())
  lookup = (generate.PromptLookup(ngram_min=1) if drafter == "lookup" else
            generate.DraftModel(MarkovDecoder(table + rng.normal(0, 1.0, table.shape)),
                                draft_tokens=3))
  drafted = accepted = 0
  for seed in range(runs):
    session.reset()
    out, stats = session.generate(context, steps, generate.Sampling(1.0, top_k, seed=seed),
                                  speculative=lookup)
    counts[tuple(out)] += 1
    drafted, accepted = drafted + stats.drafted, accepted + stats.accepted
  assert 0.2 < accepted / drafted < 0.9, (accepted, drafted)  # both branches well exercised
  seen = expected > 0
  assert counts[~seen].sum() == 0  # nothing top_k excludes
  result = scipy_stats.chisquare(counts[seen], expected[seen] * runs)
  assert result.pvalue > 1e-4, result


def test_a_draft_models_greedy_speculation_gives_plain_greedy_tokens(tiny):
  """Drafts from another model (the tiny SmolLM2: other weights, the same tokenizer) through the
  LiteRT runners: the text is plain greedy's; a second turn feeds the draft only what is new."""
  path, _ = tiny
  draft_spec = registry.Registry().get("smollm2")
  # A draft only prefills and decodes: tools/generate converts it without verify signatures
  # (and the CLI test below then finds this float file and only quantizes it).
  draft_path = pipeline.artifact(draft_spec, "tiny", pipeline.weights(draft_spec, "tiny"),
                                 recipe="none", signatures=DRAFT_SIGNATURES,
                                 log=lambda _: None).path
  context = [int(t) for t in np.random.default_rng(3).integers(0, 256, 12)]
  plain, _ = generate.Session(runner.Runner(path), set()).generate(context, 30)
  drafter = generate.DraftModel(runner.Runner(draft_path), draft_tokens=3)
  session = generate.Session(runner.Runner(path), set())
  fast, stats = session.generate(context, 30, speculative=drafter)
  assert fast == plain and stats.verify_calls > 0 and stats.drafted <= 3 * stats.verify_calls
  follow = context + fast + [7, 8]
  out, _ = session.generate(follow, 6, speculative=drafter)
  assert drafter.history[:len(follow)] == follow
  assert out == generate.Session(runner.Runner(path), set()).generate(follow, 6)[0]


def test_a_draft_model_with_a_shorter_cache_is_refused(tiny):
  class Short:
    kv_cache_max_len = 8
  session = generate.Session(runner.Runner(tiny[0]), set())
  with pytest.raises(generate.GenerationError, match="the draft model's KV cache holds 8 tokens, "
                     "fewer than the target's 64: convert the draft with --kv_cache_max_len=64"):
    session.generate([1, 2], 4, speculative=generate.DraftModel(Short()))


def test_speculative_sampling_runs_on_the_litert_model(tiny):
  """Sampled speculation through verify_<k> on the converted model: drafts are scored and
  kept; at a temperature low enough that sampling is argmax, the text is plain greedy's."""
  path, _ = tiny
  phrase = [int(t) for t in np.random.default_rng(7).integers(0, 256, 5)]
  context = phrase * 3
  plain, _ = generate.Session(runner.Runner(path), set()).generate(context, 20)
  cold, stats = generate.Session(runner.Runner(path), set()).generate(
      context, 20, generate.Sampling(temperature=1e-4, seed=1),
      speculative=generate.PromptLookup(ngram_min=1))
  assert cold == plain and stats.verify_calls > 0 and stats.accepted > 0
  # top_k=2 keeps the sampled text near the repeating greedy one, so drafts keep being made.
  warm, stats = generate.Session(runner.Runner(path), set()).generate(
      context, 20, generate.Sampling(temperature=1.0, top_k=2, seed=1),
      speculative=generate.PromptLookup(ngram_min=1))
  assert len(warm) == 20 and all(0 <= t < 256 for t in warm) and stats.verify_calls > 0


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


def test_the_caller_ends_generation_and_a_raised_cancel_leaves_the_cache_exact(tiny):
  path, model = tiny
  expected = _torch_greedy(model, [1, 2, 3], 6)
  session = generate.Session(runner.Runner(path), set())
  seen = []
  out, stats = session.generate([1, 2, 3], 10, on_token=lambda t: seen.append(t) or len(seen) == 2)
  assert out == seen == expected[:2] and stats.stopped_by == "caller"

  class Cancel(Exception):
    pass

  def cancel_at_third(token):
    seen.append(token)
    if len(seen) == 5:
      raise Cancel()

  with pytest.raises(Cancel):
    session.generate([1, 2, 3], 10, on_token=cancel_at_third)
  assert session.history == [1, 2, 3] + expected[:2]  # the third token was never fed
  again, stats = session.generate([1, 2, 3, *expected[:3]], 3)  # the server's next request
  assert stats.prompt_tokens == 1 and again == expected[3:6]


class _EvenTokens:
  """A constraint allowing even token ids only, complete after `length` tokens."""

  def __init__(self, length):
    self.length, self.accepted = length, []

  def finished(self):
    return len(self.accepted) >= self.length

  def mask(self, logits):
    logits[1::2] = -np.inf

  def accept(self, token):
    assert token % 2 == 0
    self.accepted.append(token)


def test_a_constraint_masks_the_logits_and_ends_generation(tiny):
  path, model = tiny
  context = [7, 8, 9]
  expected = []
  for _ in range(4):
    logits = testing.zoo_logits(model, context + expected, SIGNATURES.kv_cache_max_len)[-1]
    expected.append(2 * int(np.asarray(logits)[0::2].argmax()))  # PyTorch's best even token
  constraint = _EvenTokens(4)
  out, stats = generate.Session(runner.Runner(path), set()).generate(
      context, 10, constraint=constraint)
  assert out == expected == constraint.accepted and stats.stopped_by == "constraint complete"


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
  # A temperature so small that logits / T overflow (1e-320 is a float64 subnormal): the largest
  # logit, not nan probabilities.
  for top_k in (0, 2):
    order, probs = generate.distribution(logits, generate.Sampling(1e-320, top_k=top_k))
    assert np.isfinite(probs).all() and order[np.argmax(probs)] == np.argmax(logits)
    assert generate.sample(logits, generate.Sampling(1e-320, top_k=top_k), rng) == 0


@pytest.mark.parametrize("kwargs, message", [
    (dict(context=list(range(65)), max_new_tokens=4),
     "the prompt takes 65 tokens, but the KV cache holds 64: shorten it"),
    (dict(context=[1, 2], max_new_tokens=0), "max_new_tokens must be positive, got 0"),
    (dict(context=[1, 2], max_new_tokens=4, sampling=generate.Sampling(temperature=-1)),
     "temperature must be a finite number >= 0, got -1"),
    (dict(context=[1, 2], max_new_tokens=4, sampling=generate.Sampling(temperature=float("nan"))),
     "temperature must be a finite number >= 0, got nan"),
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


def test_a_prompt_that_fills_the_cache_still_gets_its_one_token(tiny):
  """Prefill's last logits give a token that is never fed back, so a prompt as long as the cache
  has an answer of one token: PyTorch's greedy token for it."""
  path, model = tiny
  context = [(7 * i) % 50 + 3 for i in range(SIGNATURES.kv_cache_max_len)]
  out, stats = generate.Session(runner.Runner(path), set()).generate(context, 10)
  assert (out, stats.stopped_by) == (_torch_greedy(model, context, 1), "KV cache full")


def test_text_stream_never_splits_a_character():
  def decode(ids):  # a byte-level tokenizer: ids are UTF-8 bytes
    return bytes(ids).decode("utf-8", errors="replace")

  written = []
  stream = generate.TextStream(decode, written.append)
  for token in "né ✓".encode():
    stream(token)
  assert "".join(written) == "né ✓" and all("\ufffd" not in w for w in written)


def test_cli_converts_once_then_reuses_the_cached_artifact(tiny):
  del tiny  # its float file is cached: the first run only quantizes it
  args = ("--model=tinyllama", "--variant=tiny", "--prompt=hello", "--max_new_tokens=5", *CLI)
  first = testing.run_tool("generate", *args)
  assert first.returncode == 0, first.stderr[-3000:]
  assert "quantizing tinyllama-tiny (dynamic_int8) on first use" in first.stderr
  assert "decode 5 tokens at" in first.stderr
  # Quiet by default: no LiteRT start-up lines (accelerator probes, INFO) on stderr.
  assert "INFO" not in first.stderr and "accelerator" not in first.stderr.lower()
  second = testing.run_tool("generate", *args)
  assert second.returncode == 0 and "converting" not in second.stderr
  assert second.stdout == first.stdout  # greedy: the same text
  weights = pipeline.weights(SPEC, "tiny", log=lambda m: pytest.fail(m))
  artifact = pipeline.artifact(SPEC, "tiny", weights, signatures=SIGNATURES,
                               log=lambda m: pytest.fail(m))  # cached: no conversion, no message
  assert artifact.path.exists()
  fast = testing.run_tool("generate", *args, "--speculative=prompt_lookup")
  assert fast.returncode == 0, fast.stderr[-3000:]
  assert fast.stdout == first.stdout and "converting" not in fast.stderr
  drafted = testing.run_tool("generate", *args, "--speculative=draft_model",
                             "--draft_model=smollm2/tiny", "--draft_tokens=3")
  assert drafted.returncode == 0, drafted.stderr[-3000:]
  assert drafted.stdout == first.stdout and "smollm2-tiny (dynamic_int8) on first use" in (
      drafted.stderr)
  assert "draft tokens accepted" in drafted.stderr
  # The draft was converted without verify signatures, which it never calls.
  draft = registry.Registry().get("smollm2")
  assert pipeline.cached_artifact(draft, "tiny", pipeline.weights(draft, "tiny"),
                                  recipe="dynamic_int8", signatures=DRAFT_SIGNATURES) is not None
  verbose = testing.run_tool("generate", *args, "--verbose")
  assert verbose.returncode == 0 and "INFO" in verbose.stderr  # --verbose shows them


@pytest.mark.parametrize("args, message", [
    (("--temperature=-1", "--prompt=x"), "--temperature must be a finite number >= 0, got -1.0"),
    (("--prompt=x", "--checkpoint=/nonexistent/ckpt"),
     "checkpoint /nonexistent/ckpt does not exist"),
    (("--temperature=nan", "--prompt=x"), "--temperature must be a finite number >= 0, got nan"),
    (("--temperature=inf", "--prompt=x"), "--temperature must be a finite number >= 0, got inf"),
    (("--temperature=0.5", "--top_p=2", "--prompt=x"), "--top_p must be in (0, 1], got 2.0"),
    (("--max_new_tokens=0", "--prompt=x"), "--max_new_tokens must be positive, got 0"),
    ((), "give --prompt=TEXT, or --chat for a conversation"),
    (("--prompt= \n",), "--prompt is empty: give the text to answer or continue"),
    (("--prompt=x", "--top_k=5"), "--top_k applies only when sampling: set --temperature above 0"),
    (("--prompt=x", "--sampling_seed=3"), "--sampling_seed applies only when sampling"),
    (("--prompt=x", "--system=Be brief."),
     "tinyllama-tiny has no chat template (a base model): --system cannot apply"),
    (("--chat",), "tinyllama-tiny has no chat template (a base model): --chat cannot apply"),
    (("--prompt=x", "--raw", "--system=Answer in French."),
     "--system needs the chat template, which --raw turns off"),
    (("--chat", "--raw"), "--chat talks through the chat template and --raw turns it off"),
    (("--prompt=x", "--raw"), "tinyllama-tiny has no chat template (a base model): its prompts "
     "are plain completions already, so --raw cannot apply"),
    (("--prompt=x", "--system= "), "--system is empty: give the instructions, or drop --system"),
    (("--prompt=x", "--threads=0"), "--threads must be at least 1, got 0"),
    (("--prompt=x", "--threads=5000"), "--threads=5000 is more than the "),
    # Bytes that are not UTF-8 reach Python as lone surrogates (a TypeError in the tokenizer).
    (("--prompt=h\udcffi",), "the text is not UTF-8 (byte 0xff at character 1): give UTF-8 text"),
    (("--prompt=x", "--temperature=0.5", "--sampling_seed=-1"),
     "--sampling_seed must be 0 or more, got -1"),
    (("--prompt=x", "--checkpoint="), "--checkpoint is empty: give a Hugging Face directory or a "
     ".gguf file, or leave the flag out"),
    (("--prompt=x", "--draft_tokens=3"), "--draft_tokens applies only with --speculative"),
    (("--prompt=x", "--speculative=draft_model"),
     "--speculative=draft_model needs --draft_model=NAME[/VARIANT]"),
    (("--prompt=x", "--draft_model=smollm2/tiny"),
     "--draft_model applies only with --speculative=draft_model"),
    (("--prompt=x", "--speculative=draft_model", "--draft_model=nosuch"),
     "--draft_model=nosuch: unknown model 'nosuch'; registered models:"),
    (("--prompt=x", "--speculative=draft_model", "--draft_model=smollm2/huge"),
     "--draft_model=smollm2/huge: unknown variant 'huge' of model 'smollm2'"),
    (("--prompt=x", "--speculative=draft_model", "--draft_model=smollm2/"),  # a trial: read as
     "--draft_model=smollm2/ is not NAME or NAME/VARIANT of a registered model"),  # the default
    (("--prompt=x", "--speculative=draft_model", "--draft_model=/tmp/ckpt"),
     "--draft_model=/tmp/ckpt is not NAME or NAME/VARIANT of a registered model"),
    (("--prompt=x", "--speculative=prompt_lookup", "--draft_tokens=8"),
     "--draft_tokens=8 is more than verify_8 scores after the pending token (7): use at most 7"),
    (("--prompt=x", "--speculative=draft_model", "--draft_model=smollm2"),
     "--draft_model=smollm2: its tokenizer is not tinyllama-tiny's (49152 against 256 tokens"),
    # A trial: the target as its own draft converted a second file and halved the speed.
    (("--prompt=x", "--speculative=draft_model", "--draft_model=tinyllama/tiny"),
     "--draft_model=tinyllama/tiny: it is the target model itself: a draft pays off only when it is "
     "much smaller"),
    (("--prompt=x", "--speculative=medusa"),
     "unknown --speculative=medusa; choose one of none, prompt_lookup, draft_model"),
    (("--prompt=x", "--speculative=prompt_lookup", "--verify_lengths=none",
      "--verify_windows=none"),
     "--speculative needs verify_<k> signatures, and tinyllama-tiny would have none"),
])
def test_cli_bad_options_and_options_that_cannot_apply_are_one_line(args, message):
  result = testing.run_tool("generate", "--model=tinyllama", "--variant=tiny", *CLI, *args)
  assert testing.one_line_error(result, "generate").startswith(f"generate: error: {message}")


def test_a_prompt_longer_than_the_cache_is_refused_before_converting():
  """The tokenizer is at hand before the conversion: a prompt that cannot fit costs no minutes.
  A new recipe (never converted in this test run) shows it: no conversion line is logged."""
  result = testing.run_tool("generate", "--model=tinyllama", "--variant=tiny", *CLI,
                            "--quantize=dynamic_int8:octav", "--prompt=" + "a b c d " * 40)
  line = testing.one_line_error(result, "generate")
  assert re.fullmatch(r"generate: error: the prompt takes \d+ tokens, but the KV cache holds 64: "
                      r"shorten it, or convert with a larger --kv_cache_max_len", line), line
  assert "on first use" not in result.stderr and "export float" not in result.stderr


def _chat(checkpoint, stdin, *args):
  return testing.run_tool("generate", "--model=smollm2", "--variant=tiny",
                          f"--checkpoint={checkpoint}", "--chat", "--max_new_tokens=4", *CHAT_CLI,
                          *args, stdin=stdin)


def test_a_refused_chat_turn_leaves_the_conversation_as_it_was(chat_checkpoint):
  """hi, then a message longer than the KV cache (refused), then a short question: the third
  turn is answered exactly as if the refused one had never been typed."""
  refused_then_asked = _chat(chat_checkpoint, "hi\n" + "x" * 200 + "\nWhat is it?\n\n")
  assert refused_then_asked.returncode == 0, refused_then_asked.stderr[-3000:]
  errors = [l for l in refused_then_asked.stderr.splitlines() if "generate: " in l]
  assert len(errors) == 1 and "but the KV cache holds 64" in errors[0]
  assert errors[0].endswith("(/reset starts the conversation over)")  # the chat's own way
  asked = _chat(chat_checkpoint, "hi\nWhat is it?\n")  # ended by EOF, not an empty line
  assert asked.returncode == 0, asked.stderr[-3000:]
  assert asked.stderr.endswith("> \n")  # the last prompt's line is ended, as a shell's is
  assert refused_then_asked.stdout == asked.stdout
  assert refused_then_asked.stderr.count("[prefill") == asked.stderr.count("[prefill") == 2


def test_the_signatures_a_short_cache_leaves_out_are_named():
  """A trial: --kv_cache_max_len=100 dropped SmolLM2's prefill_128 and its windows silently."""
  result = testing.run_tool("generate", "--model=smollm2", "--variant=tiny",
                            "--kv_cache_max_len=100", "--prompt=" + "a b c d " * 60)
  assert testing.one_line_error(result, "generate").startswith(
      "generate: error: the prompt takes")  # checked before any conversion
  assert ("--kv_cache_max_len=100 leaves out the model's prefill_128, decode_w256, decode_w512, "
          "decode_w768 (too long for that cache), and the window signatures built on them"
          in result.stderr.splitlines())


def test_a_bad_byte_is_placed_in_the_users_own_text(chat_checkpoint):
  """A trial: the position counted the chat template's text before the prompt (115, not 1)."""
  out = testing.run_tool("generate", "--model=smollm2", "--variant=tiny",
                         f"--checkpoint={chat_checkpoint}", "--prompt=h\udcffi", *CHAT_CLI)
  assert testing.one_line_error(out, "generate") == (
      "generate: error: the text is not UTF-8 (byte 0xff at character 1): give UTF-8 text")


def test_a_chat_template_that_refuses_a_role_is_one_line(chat_checkpoint, tmp_path):
  no_system = tmp_path / "no_system"
  no_system.mkdir()
  for f in chat_checkpoint.iterdir():
    (no_system / f.name).write_bytes(f.read_bytes())
  settings = json.loads((no_system / "tokenizer_config.json").read_text())
  (no_system / "tokenizer_config.json").write_text(json.dumps({**settings,
                                                               "chat_template": NO_SYSTEM}))
  run = testing.run_tool("generate", "--model=smollm2", "--variant=tiny",
                         f"--checkpoint={no_system}", "--prompt=hi", "--system=Be brief.",
                         *CHAT_CLI)
  assert testing.one_line_error(run, "generate") == (
      "generate: error: the model's chat template refuses this conversation (roles: system, "
      "user): System role not supported; drop what it objects to (e.g. --system, which some "
      "templates do not take)")
