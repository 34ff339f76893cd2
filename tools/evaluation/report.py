"""The evaluation's table and plot, from its rows (tools/evaluate.py)."""

import pathlib

from litezoo.artifacts import files


def table(model: str, rows: list[dict]) -> str:
  lines = [f"| {model} recipe | size (MiB) | bits/weight | perplexity | vs float | top-1 agree | "
           "mean KL |", "|---|---|---|---|---|---|---|"]
  for r in rows:
    lines.append(f"| `{r['recipe']}` | {r['size_bytes'] / 2**20:.1f} | {r['bits_per_weight']:.2f} | "
                 f"{r['perplexity']:.3f} | {r['perplexity_change']:+.2%} | "
                 f"{r['top1_agreement']:.2%} | {r['mean_kl']:.4f} |")
  return "\n".join(lines)


def plot(model: str, baseline: float, rows: list[dict], path: pathlib.Path) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(7, 4.5))
  for r in rows:
    ax.scatter(r["size_bytes"] / 2**20, r["perplexity"], s=30)
    ax.annotate(r["recipe"].replace(",", "\n"), (r["size_bytes"] / 2**20, r["perplexity"]),
                fontsize=7, xytext=(4, 4), textcoords="offset points")
  ax.axhline(baseline, color="gray", linestyle="--", linewidth=1, label="PyTorch float32")
  ax.set_xlabel("file size (MiB)")
  ax.set_ylabel("perplexity (lower is better)")
  ax.set_title(f"{model}: quality against size per recipe")
  ax.legend()
  fig.tight_layout()
  with files.atomic_path(path) as tmp:
    fig.savefig(tmp, format="png", dpi=120)
  plt.close(fig)
