"""The benchmark's results: derived figures, speed targets, the flat summary, and the JSON, markdown
table and PNG plots written from them. The README table is regenerated from the JSON
(`markdown(results)`), never typed by hand."""

import statistics

from litezoo.tools.bench import measure

SCHEMA = "litezoo-benchmark/1"
PEER_KEYS = ("status", "engine", "artifact", "conversion", "load_s", "first_call_s", "ttft_s",
             "prefill_tps", "decode_tps", "runtime_peak_rss_bytes")
# The speed targets: (key, what).
TARGETS = (
    ("decode_vs_reference", "decode >= 1.5x the reference path"),
    ("decode_vs_llamacpp", "decode >= llama.cpp on the matching GGUF type"),
    ("prefill_vs_reference", "prefill 128 >= the reference path"),
    ("prefill_vs_llamacpp", "prefill 128 >= llama.cpp"),
    ("decode_vs_bandwidth", "decode >= 60% of the memory-bandwidth bound"),
    ("rss_vs_file", "runtime peak RSS <= 1.3x the file"),
    ("second_start", "a second start reuses the packed weights"),
)


def headline_decode(peer: dict) -> float | None:
  """Decode tok/s over the measured depths (their median)."""
  values = list((peer.get("decode_tps") or {}).values())
  return statistics.median(values) if values else None


def derive(peer: dict, read_fraction: float, bandwidth: float) -> None:
  """Adds the figures computed from the measured ones: bytes read per decoded token, the bound
  they imply, the fraction of it reached, and peak RSS over file size."""
  if peer.get("status") != "ok":
    return
  size = peer["artifact"]["size_bytes"]
  peer["decode_read_bytes"] = int(size * read_fraction)
  peer["bandwidth_bound_tps"] = bandwidth / peer["decode_read_bytes"]
  decode = headline_decode(peer)
  peer["decode_tps_headline"] = decode
  peer["bandwidth_fraction"] = decode / peer["bandwidth_bound_tps"] if decode else None
  rss = peer.get("runtime_peak_rss_bytes") or peer.get("process_peak_rss_bytes")
  peer["runtime_peak_rss_bytes"] = rss
  peer["rss_over_file"] = rss / size if rss else None


def _ratio(a, b):
  return a / b if a and b else None


def targets(peers: dict, prefill_key: str) -> list[dict]:
  ok = lambda name: peers.get(name, {}).get("status") == "ok"
  zoo = peers.get("zoo", {})
  found = []

  def add(key, measured, wanted, met, detail):
    found.append({"key": key, "target": dict(TARGETS)[key], "measured": measured,
                  "wanted": wanted, "met": met, "detail": detail})

  if not ok("zoo"):
    return [{"key": k, "target": t, "measured": None, "wanted": None, "met": None,
             "detail": "the zoo peer did not run"} for k, t in TARGETS]
  prefill = lambda p: (p.get("prefill_tps") or {}).get(prefill_key)
  for other, key, wanted in (("reference", "decode_vs_reference", 1.5),
                             ("llamacpp", "decode_vs_llamacpp", 1.0)):
    r = _ratio(headline_decode(zoo), headline_decode(peers[other])) if ok(other) else None
    add(key, r, wanted, None if r is None else r >= wanted,
        f"{other} {peers.get(other, {}).get('status', 'not run')}" if r is None else
        f"{headline_decode(zoo):.2f} vs {headline_decode(peers[other]):.2f} tok/s")
  for other, key in (("reference", "prefill_vs_reference"), ("llamacpp", "prefill_vs_llamacpp")):
    r = _ratio(prefill(zoo), prefill(peers[other])) if ok(other) else None
    add(key, r, 1.0, None if r is None else r >= 1.0,
        f"{other} {peers.get(other, {}).get('status', 'not run')}" if r is None else
        f"prefill {prefill_key}: {prefill(zoo):.1f} vs {prefill(peers[other]):.1f} tok/s")
  fraction = zoo.get("bandwidth_fraction")
  add("decode_vs_bandwidth", fraction, 0.6, None if fraction is None else fraction >= 0.6,
      f"bound {zoo['bandwidth_bound_tps']:.1f} tok/s from {zoo['decode_read_bytes'] / 2**20:.0f} "
      "MiB read per token")
  # The worse of the measured session and the cold start (which packs the weights).
  size, cold = zoo["artifact"]["size_bytes"], zoo.get("cold_start")
  peaks = [zoo.get("runtime_peak_rss_bytes"), cold and cold.get("runtime_peak_rss_bytes")]
  worst = max((p for p in peaks if p), default=None)
  add("rss_vs_file", _ratio(worst, size), 1.3, None if worst is None else worst / size <= 1.3,
      f"{(peaks[0] or 0) / 2**30:.2f} GiB running, {(peaks[1] or 0) / 2**30:.2f} GiB on a cold "
      f"start, for a {size / 2**30:.2f} GiB file")
  if cold:
    cold_s = cold["load_s"] + cold["first_call_s"]
    warm_s = zoo["load_s"] + zoo["first_call_s"]
    reused = cold.get("weight_cache_bytes", 0) > 0 and warm_s < cold_s
    add("second_start", _ratio(warm_s, cold_s), None, reused,
        f"start + first call {warm_s:.2f} s vs {cold_s:.2f} s cold; weight cache "
        f"{_mib(cold.get('weight_cache_bytes', 0))} MiB")
  else:
    add("second_start", None, None, None, "no cold start measured")
  return found


def summary(results: dict) -> dict:
  """Flat headline figures (the release model card prints these)."""
  peers = results["peers"]
  zoo = peers.get("zoo", {})
  out = {"threads": results["plan"]["threads"], "recipe": results["recipe"],
         "machine": results["machine"]["cpu"],
         "memory_bandwidth_gb_s": round(results["bandwidth"]["bytes_per_s"] / 1e9, 1)}
  key = results["prefill_key"]
  for name, peer in peers.items():
    if peer.get("status") != "ok":
      continue
    if headline_decode(peer):
      out[f"{name} decode tok/s"] = round(headline_decode(peer), 2)
    if (peer.get("prefill_tps") or {}).get(key):
      out[f"{name} prefill {key} tok/s"] = round(peer["prefill_tps"][key], 1)
  if zoo.get("status") == "ok":
    out["zoo file MiB"] = round(zoo["artifact"]["size_bytes"] / 2**20, 1)
    out["zoo runtime peak RSS GiB"] = round(zoo["runtime_peak_rss_bytes"] / 2**30, 2)
    out["zoo decode fraction of bandwidth bound"] = round(zoo["bandwidth_fraction"], 3)
  for t in results["targets"]:
    if t["measured"] is not None:
      out[f"target {t['key']}"] = f"{t['measured']:.2f} ({'met' if t['met'] else 'missed'})"
  return out


def _f(value, fmt="{:.1f}"):
  return "–" if value is None else fmt.format(value)


def _mib(size: int) -> str:
  """MiB, with a decimal below 10 (a tiny model's figures would all read 0)."""
  return f"{size / 2**20:.1f}" if size < 10 * 2**20 else f"{size / 2**20:.0f}"


def _ordered(results: dict) -> dict:
  """The peers in the order they ran (the JSON's keys are sorted)."""
  peers = results["peers"]
  return {n: peers[n] for n in results.get("peer_order", peers) if n in peers}


def markdown(results: dict) -> str:
  peers = _ordered(results)
  plan = results["plan"]
  lengths = [str(n) for n in plan["prefill_lengths"]]
  depths = [str(d) for d in plan["depths"]]
  machine = results["machine"]  # the ISA recorded since 2026-12-02: the kernels depend on it
  cpu = machine["cpu"] + (f" ({measure.isa_text(machine)})" if "isa" in machine else "")
  lines = [
      f"### {results['model']}-{results['variant']} `{results['recipe']}`, "
      f"{plan['threads']} threads",
      "",
      f"Machine: {cpu}, {results['machine']['cpus']} CPUs, "
      f"{results['machine']['memory_bytes'] / 2**30:.0f} GiB; load average "
      f"{results['machine']['load_average_start']} at start, "
      f"{results['machine']['load_average_end']} at end (other work shares the CPU). Measured "
      f"read bandwidth {results['bandwidth']['bytes_per_s'] / 1e9:.1f} GB/s. Weights: "
      f"{results['weights']['kind']} (seed {results['weights']['seed']}), the same checkpoint for "
      "every peer. Medians of "
      f"{plan['repeats']} repeats; decode over {plan['decode_tokens']} tokens at each depth.",
      "",
      "| peer | engine | file MiB | convert s / peak GiB | load s | first call s | TTFT s ("
      f"{plan['ttft_prompt']}) | " + " | ".join(f"prefill {n} tok/s" for n in lengths) + " | " +
      " | ".join(f"decode @{d} tok/s" for d in depths) +
      " | % of bw bound | peak RSS GiB | RSS / file |",
      "|" + "---|" * (10 + len(lengths) + len(depths)),
  ]
  for name, p in peers.items():
    if p.get("status") != "ok":
      continue
    conv = p.get("conversion")
    conv_text = (f"{conv['seconds']:.0f} / "
                 f"{_f(conv['peak_rss_bytes'] and conv['peak_rss_bytes'] / 2**30)}"
                 f"{' (2 processes)' if conv.get('export_processes') == 2 else ''}"
                 f"{' (an earlier run)' if conv.get('reused') else ''}"
                 if conv else "–")
    lines.append(
        f"| {name} | {p['engine']} | {p['artifact']['size_bytes'] / 2**20:.0f} | {conv_text} | "
        f"{_f(p.get('load_s'), '{:.2f}')} | {_f(p.get('first_call_s'), '{:.2f}')} | "
        f"{_f(p.get('ttft_s'), '{:.2f}')} | " +
        " | ".join(_f(p["prefill_tps"].get(n)) for n in lengths) + " | " +
        " | ".join(_f(p["decode_tps"].get(d), "{:.2f}") for d in depths) + " | " +
        f"{_f(p.get('bandwidth_fraction') and 100 * p['bandwidth_fraction'], '{:.0f}%')} | "
        f"{_f(p.get('runtime_peak_rss_bytes') and p['runtime_peak_rss_bytes'] / 2**30, '{:.2f}')} "
        f"| {_f(p.get('rss_over_file'), '{:.2f}')} |")
  over = [n for n, p in peers.items() if (p.get("bandwidth_fraction") or 0) > 1]
  if over:
    lines += ["", f"{', '.join(over)} decoded faster than the measured bandwidth allows: the numpy "
              "read test under-reads the machine (it was loaded, or numpy's sum is not "
              "bandwidth-bound here), so the fractions are upper estimates."]
  resident = [(n, p["resident_bytes_by_mapping"]) for n, p in peers.items()
              if p.get("status") == "ok" and p.get("resident_bytes_by_mapping")]
  if resident:
    lines += ["", "Resident memory at the end of each session, by mapping (MiB; anonymous holds "
              "the heap, the runtime's arenas and the KV cache): " + "; ".join(
                  f"{n}: " + ", ".join(f"{kind} {_mib(size)}" for kind, size in sorted(
                      m.items(), key=lambda i: -i[1]) if size)
                  for n, m in resident) + "."]
  skipped = [(n, p) for n, p in peers.items() if p.get("status") != "ok"]
  if skipped:
    lines += [""] + [f"- {n}: {p['status']}: {p.get('reason', '')}" for n, p in skipped]
  lines += ["", "| target | measured | met | detail |", "|---|---|---|---|"]
  for t in results["targets"]:
    met = {True: "yes", False: "**no**", None: "not measured"}[t["met"]]
    lines.append(f"| {t['target']} | {_f(t['measured'], '{:.2f}')} | {met} | {t['detail']} |")
  versions = ", ".join(f"{k} {v}" for k, v in sorted(results["versions"].items()))
  lines += ["", f"Versions: {versions}."]
  return "\n".join(lines) + "\n"


def plot(results: dict, path) -> None:
  """Decode tok/s by context depth, prefill tok/s by length, and peak RSS against file size."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  peers = {n: p for n, p in _ordered(results).items() if p.get("status") == "ok"}
  fig, (ax_dec, ax_pre, ax_mem) = plt.subplots(1, 3, figsize=(16, 4.8))
  for name, p in peers.items():
    depths = sorted(int(d) for d in p["decode_tps"])
    ax_dec.plot(depths, [p["decode_tps"][str(d)] for d in depths], marker="o", label=name)
  zoo = peers.get("zoo")
  if zoo and zoo.get("bandwidth_bound_tps"):
    ax_dec.axhline(zoo["bandwidth_bound_tps"], color="gray", linestyle="--",
                   label="zoo bandwidth bound")
  ax_dec.set(title="decode", xlabel="tokens in the cache", ylabel="tok/s")
  ax_dec.legend(fontsize=7)
  lengths = [str(n) for n in results["plan"]["prefill_lengths"]]
  width = 0.8 / max(1, len(peers))
  for i, (name, p) in enumerate(peers.items()):
    ax_pre.bar([j + i * width for j in range(len(lengths))],
               [p["prefill_tps"].get(n, 0) for n in lengths], width, label=name)
  ax_pre.set_xticks([j + 0.4 - width / 2 for j in range(len(lengths))], lengths)
  ax_pre.set(title="prefill", xlabel="prompt tokens", ylabel="tok/s")
  names = list(peers)
  ax_mem.bar([i - 0.2 for i in range(len(names))],
             [peers[n]["artifact"]["size_bytes"] / 2**30 for n in names], 0.4, label="file")
  ax_mem.bar([i + 0.2 for i in range(len(names))],
             [(peers[n].get("runtime_peak_rss_bytes") or 0) / 2**30 for n in names], 0.4,
             label="runtime peak RSS")
  ax_mem.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=7)
  ax_mem.set(title="memory", ylabel="GiB")
  ax_mem.legend(fontsize=7)
  fig.suptitle(f"{results['model']}-{results['variant']} {results['recipe']}, "
               f"{results['plan']['threads']} threads")
  fig.tight_layout()
  fig.savefig(path, dpi=100, format="png")
  plt.close(fig)
