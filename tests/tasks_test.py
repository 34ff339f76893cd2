"""The offline task sets (quant/data/tasks) and their scoring (tools/evaluation/tasks.py): the float
model's multiple-choice log-likelihoods against lm-eval's method written again here on
transformers, the float .tflite and its .litertlm (in Google's LiteRT-LM engine) giving the float
model's picks and answers, malformed task files refused by message, and evaluate --tasks' JSON.

The model is tinyllama's `tiny` variant (random weights written by transformers, a SentencePiece
tokenizer that puts BOS first): its scores are chance, but every backend must reach the same ones.
"""

import json
import re

import numpy as np
import pytest
import torch
import transformers

from litezoo import pipeline
from litezoo.artifacts import bundle
from litezoo.core import registry
from litezoo.core.spec import Signatures
from litezoo.reference.reauthored import TorchDecoder
from litezoo.runtime import runner
from litezoo.tests import testing
from litezoo.tools.evaluation import tasks

SPEC = registry.Registry().get("tinyllama")
# What tools/evaluate converts for --window=64 --kv_cache_max_len=256 on the tiny variant: the CLI
# test below finds this float file in the module's cache. (The tiny tokenizer's 256 pieces make
# the few-shot short-answer prompts about 200 tokens long.)
KV_LEN = 256
EVALUATE_SIGNATURES = Signatures((32,), KV_LEN, prefill_logits="all")
LIMIT = 20  # items of each task scored by the backends (all 60 against transformers)

# One fresh artifact cache for the module (autouse): the CLI run reuses the fixture's float file.
module_artifact_cache = testing.module_artifact_cache


@pytest.fixture(scope="module")
def tiny():
  weights = pipeline.weights(SPEC, "tiny", log=lambda _: None)
  _, model = pipeline.original_and_ours(SPEC, "tiny", weights, KV_LEN, log=lambda _: None)
  artifact = pipeline.artifact(SPEC, "tiny", weights, recipe="none",
                               signatures=EVALUATE_SIGNATURES, log=lambda _: None)
  return weights, model, artifact, pipeline.tokenizer(weights)


@pytest.fixture(scope="module")
def shipped():
  return {t.name: t for t in tasks.resolve(["all"])}


@pytest.fixture(scope="module")
def float_scores(tiny, shipped):
  _, model, _, tok = tiny
  assert tasks.tokens_needed(list(shipped.values()), tok) <= KV_LEN
  backend = tasks.DecoderBackend(TorchDecoder(model, KV_LEN), tok)
  return {"multiple_choice": tasks.score_task(backend, shipped["multiple_choice"]),
          "short_answer": tasks.score_task(backend, shipped["short_answer"].limited(LIMIT))}


def test_shipped_tasks_load_with_balanced_answers(shipped):
  assert set(shipped) == {"multiple_choice", "short_answer"} == set(tasks.available())
  choice, short = shipped["multiple_choice"], shipped["short_answer"]
  assert (choice.kind, short.kind) == ("multiple_choice", "short_answer")
  assert len(choice.items) >= 50 and len(short.items) >= 50
  assert all(len(i.choices) == 4 for i in choice.items)
  # The right choice sits equally often at each index: a model biased to one position scores 25%.
  assert np.bincount([i.answer for i in choice.items]).tolist() == [len(choice.items) // 4] * 4
  # Short answers are asked after the file's worked examples (few-shot); choices zero-shot.
  assert len(short.examples) == 3 and not choice.examples
  prompt = short.prompt(short.items[0])
  assert prompt.startswith("Question: What is the capital of Peru?\nAnswer: Lima\n\nQuestion: ")
  assert prompt.endswith("\n\nQuestion: What is the capital of France?\nAnswer:")
  assert choice.prompt(choice.items[0]) == (
      "Question: What color is the sky on a clear day?\nAnswer:")


def _lm_eval_loglikelihoods(model, tok, context: str, continuations: list[str]) -> list[float]:
  """lm-evaluation-harness's HFLM.loglikelihood, written again on transformers: the context
  encoded alone, the continuation as the tokens of context + continuation past it, one forward
  pass over context + continuation (minus its last token), log-softmax, the continuation's
  tokens' log-probabilities summed."""
  context_ids = tok(context)["input_ids"]
  scores = []
  for continuation in continuations:
    ids = tok(context + continuation)["input_ids"][len(context_ids):]
    full = context_ids + ids
    with torch.no_grad():
      logits = model(torch.tensor([full[:-1]])).logits[0].double()
    logp = torch.log_softmax(logits, -1)[len(context_ids) - 1:]
    scores.append(float(logp[torch.arange(len(ids)), torch.tensor(ids)].sum()))
  return scores


def test_float_multiple_choice_equals_lm_eval_method_on_transformers(tiny, shipped, float_scores):
  weights, task = tiny[0], shipped["multiple_choice"]
  model = transformers.AutoModelForCausalLM.from_pretrained(weights.path,
                                                            torch_dtype=torch.float32).eval()
  tok = transformers.AutoTokenizer.from_pretrained(weights.path)
  ours = float_scores["multiple_choice"]
  expected = [_lm_eval_loglikelihoods(model, tok, task.prompt(item),
                                      [" " + c for c in item.choices]) for item in task.items]
  np.testing.assert_allclose(ours.loglikelihoods, expected, atol=1e-4, rtol=0)
  picks = [int(np.argmax(e)) for e in expected]
  assert ours.picks == picks
  assert len(set(picks)) == 4  # a varied reference: picking one index could not pass
  assert ours.accuracy == np.mean([p == i.answer for p, i in zip(picks, task.items)])


def test_float_tflite_gives_the_float_models_picks_and_answers(tiny, shipped, float_scores):
  _, _, artifact, tok = tiny
  backend = tasks.DecoderBackend(runner.Runner(artifact.path), tok)
  choice = tasks.score_task(backend, shipped["multiple_choice"].limited(LIMIT))
  short = tasks.score_task(backend, shipped["short_answer"].limited(LIMIT))
  reference = float_scores["multiple_choice"]
  assert choice.picks == reference.picks[:LIMIT]
  np.testing.assert_allclose(choice.loglikelihoods, reference.loglikelihoods[:LIMIT], atol=1e-3)
  assert short.outputs == float_scores["short_answer"].outputs
  assert len(set(short.outputs)) > 1  # varied greedy text: echoing one answer could not pass
  assert short.agreement(float_scores["short_answer"]) == 1.0


def test_litertlm_engine_gives_the_float_models_picks_and_answers(tiny, shipped, float_scores,
                                                                  tmp_path):
  """Through the .litertlm in LiteRT-LM (float32 activations, as the zoo's runner): its own
  tokenizer and greedy decode, and run_text_scoring for the choices."""
  weights, _, artifact, tok = tiny
  path = bundle.write_bundles(artifact, tok, weights.path, tmp_path, formats=("litertlm",),
                              log=lambda _: None)["litertlm"]
  backend = tasks.LiteRTLMBackend(path, float32_activations=True)
  choice = tasks.score_task(backend, shipped["multiple_choice"].limited(LIMIT))
  short = tasks.score_task(backend, shipped["short_answer"].limited(LIMIT))
  assert choice.picks == float_scores["multiple_choice"].picks[:LIMIT]
  # Its scores run about 0.1% above the zoo's (-66.80 for -66.86): close, not bit-equal.
  np.testing.assert_allclose(choice.loglikelihoods,
                             float_scores["multiple_choice"].loglikelihoods[:LIMIT], rtol=3e-3)
  assert [tasks.cut(o) for o in short.outputs] == [
      tasks.cut(o) for o in float_scores["short_answer"].outputs]


@pytest.mark.parametrize("output, answers, exact, prefix", [
    (" Paris.\nQuestion:", ("Paris",), True, True),
    (" the Moon, of course", ("Moon",), True, True),
    (" Washington D.C.", ("Washington",), False, True),
    (" H2O", ("water", "H2O"), True, True),
    (" Parisian food", ("Paris",), False, False),
    ("\nParis", ("Paris",), False, False),  # the answer ends at the first newline
])
def test_answers_match_after_normalisation(output, answers, exact, prefix):
  assert tasks.matches(output, answers) == (exact, prefix)


GOOD = '{"question":"Q?","choices":["a","b"],"answer":1}'


@pytest.mark.parametrize("lines, problem", [
    ([GOOD, '{"question":"R?","choices":["a","b"],"answer":2'], "2: not JSON (Expecting ',' "
     "delimiter at column 48)"),
    ([GOOD, '{"question":"R?","choices":["a","b"],"answer":2}'], "2: 'answer' must be the index "
     "of the right choice, 0 to 1, got 2"),
    (['{"question":"R?","choices":["a","b"],"answer":true}'], "1: 'answer' must be the index of "
     "the right choice, 0 to 1, got true"),
    (['{"question":"R?","choices":["a","b"]}'], "1: missing key 'answer'"),
    (['{"question":"R?","answers":["x"],"hint":"y"}'], "1: unknown key 'hint' for a short "
     "answer item; keys: answers, example, question"),
    (['{"question":"","answers":["x"]}'], "1: 'question' must be a non-empty string, got \"\""),
    (['{"question":"R?","answers":[]}'], "1: 'answers' must be a non-empty list of accepted "
     "answers"),
    (['{"question":"R?","answers":["the"]}'], "1: an accepted answer is empty once normalised"),
    (['{"question":"R?","choices":["a","a"],"answer":0}'], "1: two choices are the same"),
    (['{"question":"R?"}'], "1: neither 'choices' (multiple choice) nor 'answers'"),
    (['["R?", "a"]'], "1: a line is one JSON object, got list"),
    ([GOOD, "", '{"question":"R?","answers":["x"]}'], "3: a short answer item in a file of "
     "multiple choice items (line 1): one kind per file"),
    ([GOOD, GOOD], "2: the question of line 1 again"),
    (['{"question":"R?","answers":["x"],"example":1}'], "1: 'example' must be true or false, "
     "got 1"),
    (['{"question":"R?","answers":["x"],"example":true}'], ": no items to score (only examples)"),
    ([""], ": no items"),
])
def test_a_malformed_task_file_is_refused_naming_file_and_line(tmp_path, lines, problem):
  path = tmp_path / "mine.jsonl"
  path.write_text("\n".join(lines) + "\n")
  with pytest.raises(tasks.TaskError) as e:
    tasks.load(path)
  assert str(e.value).startswith(f"{path}:" if problem.startswith(":") else f"{path}:{problem}")
  assert problem in str(e.value) and "\n" not in str(e.value)


def test_evaluate_writes_task_scores_into_its_json_and_table(tiny, tmp_path):
  result = testing.run_tool("evaluate", "--model=tinyllama", "--variant=tiny", "--quantize=none",
                            "--window=64", f"--kv_cache_max_len={KV_LEN}", "--max_tokens=128",
                            "--tasks=all", "--task_limit=8", "--tasks_litertlm",
                            "--output_dir=out", cwd=tmp_path)
  assert result.returncode == 0, result.stderr[-3000:]
  report = json.loads((tmp_path / "out" / "tinyllama-tiny.json").read_text())
  assert report["tasks"]["files"] == {"multiple_choice": "quant/data/tasks/multiple_choice.jsonl",
                                      "short_answer": "quant/data/tasks/short_answer.jsonl"}
  assert report["tasks"]["limit"] == 8
  assert report["tasks"]["litertlm"] == {"skipped": None, "failed": {},
                                         "activations": "the engine's CPU default"}
  floats = report["tasks"]["float"]
  (row,) = report["recipes"]
  for name in ("multiple_choice", "short_answer"):
    assert floats[name]["items"] == row["tasks"][name]["items"] == 8
    assert row["tasks"][name]["accuracy"] == floats[name]["accuracy"]
    assert row["tasks"][name]["agreement"] == 1.0  # the float .tflite is the float model
  assert row["tasks"]["multiple_choice"]["picks"] == floats["multiple_choice"]["picks"]
  assert 0 <= floats["multiple_choice"]["accuracy_norm"] <= 1
  assert row["tasks"]["short_answer"]["answers"] == floats["short_answer"]["answers"]
  # The .litertlm in LiteRT-LM with its default CPU settings: scored, on the same items.
  for name in ("multiple_choice", "short_answer"):
    litertlm = row["tasks_litertlm"][name]
    assert litertlm["items"] == 8 and 0 <= litertlm["agreement"] <= 1
  table = (tmp_path / "out" / "tinyllama-tiny.md").read_text()
  assert table.splitlines()[0].endswith("| mean KL | multiple_choice | short_answer | "
                                        "multiple_choice (LiteRT-LM) | short_answer (LiteRT-LM) |")
  accuracy = row["tasks"]["multiple_choice"]["accuracy"]
  assert f"| {accuracy:.1%} (+0.0 pt) |" in table.splitlines()[2]
  assert "Tasks (multiple_choice 8, short_answer 8 items;" in table


@pytest.mark.parametrize("args, message", [
    (["--tasks=nope"], "unknown task 'nope'; tasks: multiple_choice, short_answer, all, or a path "
     "to a .jsonl file"),
    (["--task_limit=5"], "--task_limit applies to --tasks, which is not given"),
    (["--tasks_litertlm"], "--tasks_litertlm applies to --tasks, which is not given"),
    (["--tasks=all", "--task_limit=-1"], "--task_limit must be at least 0, got -1"),
    (["--tasks=bad.jsonl"], "bad.jsonl:2: 'answers' must be a non-empty list of accepted answers"),
])
def test_evaluate_refuses_task_options_that_cannot_apply(tmp_path, args, message):
  (tmp_path / "bad.jsonl").write_text('{"question":"Q?","answers":["x"]}\n'
                                      '{"question":"R?","answers":"x"}\n')
  run = testing.run_tool("evaluate", "--model=tinyllama", "--variant=tiny", *args, cwd=tmp_path)
  assert testing.one_line_error(run, "evaluate").endswith(message)


def test_evaluate_refuses_a_kv_cache_too_short_for_the_tasks(tiny, tmp_path):
  run = testing.run_tool("evaluate", "--model=tinyllama", "--variant=tiny", "--tasks=all",
                         "--window=64", "--kv_cache_max_len=128", cwd=tmp_path)
  assert re.fullmatch(r"evaluate: error: --kv_cache_max_len=128 cannot hold the longest task "
                      r"prompt with its answer \(\d+ tokens\): raise it or leave it out",
                      testing.one_line_error(run, "evaluate"))
