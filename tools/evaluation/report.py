"""The evaluation's table, targets and plot, from its rows (tools/evaluate.py)."""

import pathlib


# The project's quality targets (issue 16).
INT8_MAX_CHANGE, INT8_MIN_TOP1 = 0.01, 0.95
INT4_MAX_CHANGE = 0.10


def table(model: str, rows: list[dict], task_info: dict | None = None) -> str:
  """The markdown table; with `task_info` (evaluate's JSON "tasks"), a column per task (and per
  task through LiteRT-LM, when scored): each row's accuracy and its change from the float PyTorch
  model in points."""
  float_tasks = (task_info or {}).get("float", {})
  columns = [("tasks", n, n) for n in float_tasks]
  if any(r.get("tasks_litertlm") for r in rows):
    columns += [("tasks_litertlm", n, f"{n} (LiteRT-LM)") for n in float_tasks]
  lines = [f"| {model} recipe | size (MiB) | bits/weight | perplexity | vs float | top-1 agree | "
           "mean KL |" + "".join(f" {title} |" for _, _, title in columns),
           "|---|---|---|---|---|---|---|" + "---|" * len(columns)]
  for r in rows:
    top1 = "—" if r.get("top1_agreement") is None else f"{r['top1_agreement']:.2%}"
    kl = "—" if r.get("mean_kl") is None else f"{r['mean_kl']:.4f}"
    cells = ""
    for key, name, _ in columns:
      score = r.get(key, {}).get(name)
      cells += " — |" if score is None else f" {task_cell(score, float_tasks[name])} |"
    # The float file against PyTorch differs in the 6th digit: no "-0.00%".
    change = 0.0 if abs(r["perplexity_change"]) < 5e-5 else r["perplexity_change"]
    lines.append(f"| `{r['recipe']}` | {r['size_bytes'] / 2**20:.1f} | "
                 f"{r['bits_per_weight']:.2f} | {r['perplexity']:.3f} | "
                 f"{change:+.2%} | {top1} | {kl} |" + cells)
  return "\n".join(lines)


def task_cell(score: dict, float_score: dict) -> str:
  """A task's accuracy and its change from the float model's, in points: `61.7% (-5.0 pt)`."""
  change = (score["accuracy"] - float_score["accuracy"]) * 100
  return f"{score['accuracy']:.1%} ({change:+.1f} pt)"


def task_notes(task_info: dict) -> str:
  """Markdown lines under the table: the float model's task scores and how they were measured."""
  parts = []
  for name, score in task_info["float"].items():
    if score["kind"] == "multiple_choice":
      parts.append(f"{name} {score['accuracy']:.1%} (length-normalised "
                   f"{score['accuracy_norm']:.1%})")
    else:
      parts.append(f"{name} {score['accuracy']:.1%} exact ({score['prefix_accuracy']:.1%} prefix)")
  counts = ", ".join(f"{n} {s['items']}" for n, s in task_info["float"].items())
  lines = [f"\nTasks ({counts} items; {', '.join(task_info['files'].values())}): PyTorch float32 "
           f"{', '.join(parts)}. Multiple choice: lm-eval's log-likelihood of each choice after "
           "the question, the largest picked; short answers: greedy, cut at a newline, period or "
           "comma, normalised exact match. Columns: accuracy through each recipe's .tflite and the "
           "zoo's runner (change from the float model in points); agreement with the float "
           "model's picks and answers is in the JSON."]
  litertlm = task_info.get("litertlm")
  if litertlm and litertlm.get("skipped"):
    lines.append(f"\nNo LiteRT-LM task scores: {litertlm['skipped']}")
  elif litertlm:
    lines.append("\nLiteRT-LM columns: each recipe's .litertlm in Google's LiteRT-LM engine with "
                 "its default CPU settings, as a user's engine runs it; choices scored by its "
                 "run_text_scoring.")
    lines += [f"\n`{recipe}` did not run in LiteRT-LM: {reason}"
              for recipe, reason in litertlm.get("failed", {}).items()]
  return "\n".join(lines) + "\n"


def _is_int4(recipe: str) -> bool:
  return "int4" in recipe.split(",")[0]


def _is_int8(recipe: str) -> bool:
  return "int8" in recipe and "int4" not in recipe


def targets(rows: list[dict], llama_rows: list[dict]) -> str:
  """Markdown lines: each quality target, the zoo's best row for it, met or missed by how much."""
  lines = ["", "Targets (issue 16), the zoo's best row for each:"]
  int8 = [r for r in rows if _is_int8(r["recipe"])]
  if int8:
    best = min(int8, key=lambda r: r["perplexity_change"])
    change, top1 = best["perplexity_change"], best["top1_agreement"]
    misses = []
    if change > INT8_MAX_CHANGE:
      misses.append(f"perplexity by {(change - INT8_MAX_CHANGE) * 100:.2f} pt")
    if top1 < INT8_MIN_TOP1:
      misses.append(f"top-1 by {(INT8_MIN_TOP1 - top1) * 100:.2f} pt")
    lines.append(f"- int8 within +1% of float and top-1 >= 95%: `{best['recipe']}` "
                 f"{change:+.2%}, top-1 {top1:.2%}: "
                 + ("met" if not misses else "missed, " + " and ".join(misses)))
  int4 = [r for r in rows if _is_int4(r["recipe"])]
  if int4:
    best = min(int4, key=lambda r: r["perplexity_change"])
    change = best["perplexity_change"]
    lines.append(f"- 4-bit within +10% of float: `{best['recipe']}` {change:+.2%}: "
                 + ("met" if change <= INT4_MAX_CHANGE else
                    f"missed by {(change - INT4_MAX_CHANGE) * 100:.1f} pt"))
  by_kind = {r["recipe"].split()[-1]: r for r in llama_rows}
  for kind, what in (("Q4_0", "better than llama.cpp Q4_0 at no more bits/weight"),
                     ("Q4_K_M", "as good as llama.cpp Q4_K_M (stretch) at no more bits/weight")):
    if kind not in by_kind or not int4:
      continue
    theirs = by_kind[kind]
    fitting = [r for r in int4 if r["bits_per_weight"] <= theirs["bits_per_weight"]]
    if not fitting:
      lines.append(f"- 4-bit {what} ({theirs['bits_per_weight']:.2f}): no zoo 4-bit row that small")
      continue
    best = min(fitting, key=lambda r: r["perplexity_change"])
    gap = best["perplexity_change"] - theirs["perplexity_change"]
    lines.append(f"- 4-bit {what} ({theirs['perplexity_change']:+.2%} at "
                 f"{theirs['bits_per_weight']:.2f}): `{best['recipe']}` "
                 f"{best['perplexity_change']:+.2%} at {best['bits_per_weight']:.2f}: "
                 + ("met" if gap < 0 else f"missed by {gap * 100:.1f} pt"))
  if "Q8_0" in by_kind and int8:
    theirs = by_kind["Q8_0"]
    best = min(int8, key=lambda r: r["perplexity_change"])
    gap = best["perplexity_change"] - theirs["perplexity_change"]
    lines.append(f"- int8 as good as llama.cpp Q8_0 ({theirs['perplexity_change']:+.2%}): "
                 f"`{best['recipe']}` {best['perplexity_change']:+.2%}: "
                 + ("met" if gap <= 0 else f"missed by {gap * 100:.2f} pt"))
  if len(lines) == 2:  # no quantized row: no target to report (only the float model ran)
    return ""
  return "\n".join(lines) + "\n"


def plot(model: str, rows: list[dict], path: pathlib.Path) -> None:
  """Perplexity change vs each engine's own float against bits/weight (the zoo's rows and
  llama.cpp's on one scale: absolute perplexities differ between the two protocols), written to
  `path` as it is (the caller writes it atomically with the table it belongs to)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(8, 5))
  for engine, marker, color in (("zoo", "o", "tab:blue"), ("llama.cpp", "s", "tab:orange")):
    mine = [r for r in rows if r.get("engine", "zoo") == engine]
    if not mine:
      continue
    ax.scatter([r["bits_per_weight"] for r in mine], [r["perplexity_change"] * 100 for r in mine],
               marker=marker, color=color, s=30, label=engine)
    for r in mine:
      ax.annotate(r["recipe"].replace(",", "\n"), (r["bits_per_weight"],
                                                   r["perplexity_change"] * 100),
                  fontsize=6, xytext=(4, 2), textcoords="offset points")
  ax.axhline(0, color="gray", linestyle="--", linewidth=1)
  ax.axhline(INT4_MAX_CHANGE * 100, color="tab:red", linestyle=":", linewidth=1,
             label="4-bit target (+10%)")
  ax.set_yscale("symlog", linthresh=1)
  ax.set_xlabel("bits per weight (file size x 8 / parameters)")
  ax.set_ylabel("perplexity vs own float (%, lower is better)")
  ax.set_title(f"{model}: quality against size")
  ax.legend(fontsize=8)
  fig.tight_layout()
  try:
    fig.savefig(path, format="png", dpi=120)
  finally:
    plt.close(fig)
