"""Benchmark 3: how well zero-shot scores rank hybrid architectures by trained accuracy.

Two hybrid search spaces on scikit-learn's digits, written in the language below: a
digits CNN with residual blocks (`RES_SPACE`) and a TFC-like MLP (`MLP_SPACE`). For each
network N architectures are sampled uniformly (seeded, no repeats). For each:

1. nashc's `hybrid_score` (with its two terms), NASWOT, SynFlow and the parameter count
   are computed on a fresh module built with the same seed, on the same batch of 32 real
   digits images from the training split, and timed; the search score (`metric
   zero_shot`, `nashc.passes.zeroshot.search_score`) follows from NASWOT and the number
   of adder layers when the tables are made (so `--render` of stored rows shows the
   installed nashc's search score);
2. a fresh module (same seed) is trained briefly with the project's QAT loop (Brevitas
   modules, Adam, cosine schedule, seeded loaders); its final validation accuracy is
   recorded.

Then, per network, Kendall tau (bootstrap 95% interval) and Spearman rho between accuracy
and each score, the op-count priors (fewer adder / shift layers) and the search score;
the paired bootstrap interval of tau(search score) - tau(other); the accuracy of the
architecture each ranks first and the mean of its top 5. A score of -inf (SynFlow when no
signal reaches the output) ranks last. Raw rows go to the JSON files after every
architecture (a cut run keeps its rows); `--render` makes the section from them again,
with `--rescore` after recomputing hybrid_score with the installed nashc (accuracies
kept). The rows behind bench/RESULTS.md section 3 are in `bench/data/zeroshot_*.json`.
Usage:

    python bench/bench_zeroshot.py [--quick] [--no-write] [--networks rescnn mlp] [--n N]
                                   [--epochs E] [--json F] [--render F.json ...]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import command_line, digits_convnet, digits_resnet, write_section  # noqa: E402

#: The search space (the .nash language). Space size: 12 (stem) x 36 (c1) x 36 (c2).
SPACE = digits_convnet("zsdigits") + """

space {
  op    c1, c2        in {conv, shift, adder}
  width stem, c1, c2  in {0.5, 1.0}
  wbits stem, c1, c2  in {2, 4, 8}
  abits stem, c1, c2  in {2, 4}
  fix   head
}

train {
  dataset digits
  epochs  10
  batch   64
  lr      0.01
}
"""

#: Digits CNN with residual blocks (the shape of the resnet8 example, scaled to 8x8 digits).
RES_SPACE = "\n" + digits_resnet("zsres") + """
space {
  op    b*.conv*  in {conv, shift, adder}
  width b*        in {0.5, 1.0}
  wbits b*        in {2, 4, 8}
  abits b*        in {2, 4}
  fix   stem, head
}

train {
  dataset digits
  epochs  2
  batch   64
  lr      0.01
}
"""

#: TFC-like MLP on digits (FINN's TFC shape, scaled down).
MLP_SPACE = """
network zsmlp {
  input 1x8x8 uint8
  weights int4
  activations uint4

  fc fc0  out 64
  fc fc1  out 64
  fc fc2  out 64
  fc head out 10 weights int8
}

space {
  op    fc1, fc2       in {conv, shift, adder}
  wbits fc0, fc1, fc2  in {2, 4, 8}
  abits fc0, fc1, fc2  in {2, 4}
  fix   head
}

train {
  dataset digits
  epochs  2
  batch   64
  lr      0.01
}
"""

NETWORK_SPACES = {"cnn": SPACE, "rescnn": RES_SPACE, "mlp": MLP_SPACE}

#: Scores computed per architecture (`nashc.passes.zeroshot.SCORES` names).
SCORE_NAMES = ("hybrid", "naswot", "synflow", "params")
#: Rows of the tables: the scores, the op-count priors and what the search ranks by.
ROW_NAMES = ("search", "search_hybrid", "hybrid", "naswot", "synflow", "params",
             "minus_adders", "minus_shifts")
SCORE_LABELS = {"search": "**search score** (`metric zero_shot`: −#adder, then NASWOT)",
                "search_hybrid": "−#adder, then hybrid_score (the search score before)",
                "hybrid": "hybrid_score (nashc's zero-shot score)", "naswot": "NASWOT",
                "synflow": "SynFlow", "params": "#params",
                "minus_adders": "prior: −#adder layers", "minus_shifts": "prior: −#shift layers"}


def sample_architectures(choices: dict[tuple[str, str], tuple[Any, ...]], n: int,
                         seed: int) -> list[dict[tuple[str, str], Any]]:
    """`n` distinct architectures drawn uniformly from the space (seeded)."""
    rng = random.Random(seed)
    keys = sorted(choices)
    size = math.prod(len(choices[k]) for k in keys)
    out: list[dict[tuple[str, str], Any]] = []
    seen: set[tuple[Any, ...]] = set()
    while len(out) < min(n, size):
        values = tuple(rng.choice(list(choices[k])) for k in keys)
        if values not in seen:
            seen.add(values)
            out.append(dict(zip(keys, values, strict=True)))
    return out


def arch_summary(choice: dict[tuple[str, str], Any]) -> str:
    """e.g. `b1.conv1 adder · b1 x0.5 w8a4 · b2.conv2 shift`: the choices per layer."""
    per: dict[str, dict[str, Any]] = {}
    for (layer, dim), v in sorted(choice.items()):
        per.setdefault(layer, {})[dim] = v
    parts = []
    for layer, d in per.items():
        txt = [layer]
        if "op" in d:
            txt.append(str(d["op"]))
        if "width" in d:
            txt.append(f"x{d['width']:g}")
        if "wbits" in d or "abits" in d:
            txt.append(f"w{d.get('wbits', '-')}a{d.get('abits', '-')}")
        parts.append(" ".join(txt))
    return " · ".join(parts)


def _rank_values(values: list[float]) -> list[float]:
    """Scores made safe for ranking: NaN and -inf rank last (ties among themselves)."""
    finite = [v for v in values if math.isfinite(v)]
    floor = (min(finite) - 1.0) if finite else 0.0
    return [v if math.isfinite(v) else (math.inf if v == math.inf else floor) for v in values]


def correlations(acc: list[float], score: list[float], boot: int = 2000,
                 seed: int = 0) -> dict[str, float]:
    """Kendall tau, Spearman rho (with p-values) and a bootstrap 95% interval of tau."""
    import numpy as np
    from scipy import stats

    n = len(acc)
    nan = float("nan")
    if n < 3:
        return {"n": n, "tau": nan, "tau_p": nan, "rho": nan, "rho_p": nan,
                "tau_lo": nan, "tau_hi": nan}
    s = _rank_values(score)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant input -> nan, reported as such
        tau = stats.kendalltau(acc, s)
        rho = stats.spearmanr(acc, s)
        a, b = np.asarray(acc), np.asarray(s)
        rng = np.random.default_rng(seed)
        taus = []
        for _ in range(boot):
            idx = rng.integers(0, n, n)
            t = stats.kendalltau(a[idx], b[idx]).statistic
            if math.isfinite(t):
                taus.append(t)
    lo, hi = np.percentile(taus, [2.5, 97.5]) if taus else (nan, nan)
    return {"n": n, "tau": float(tau.statistic), "tau_p": float(tau.pvalue),
            "rho": float(rho.statistic), "rho_p": float(rho.pvalue),
            "tau_lo": float(lo), "tau_hi": float(hi)}


def top_picks(acc: list[float], score: list[float], k: int = 5) -> tuple[float, float]:
    """Accuracy of the architecture the score ranks first, and mean accuracy of its top k."""
    s = _rank_values(score)
    order = sorted(range(len(acc)), key=lambda i: (-s[i], i))
    top = [acc[i] for i in order[:k]]
    return acc[order[0]], sum(top) / len(top)


def evaluate_architectures(program: Any, archs: list[dict[tuple[str, str], Any]],
                           epochs: int, lr: float, batch: int, seed: int,
                           log: Any = print, on_row: Any = None) -> list[dict[str, Any]]:
    import torch

    from nashc.candidate import DeclaredNetwork
    from nashc.passes.zeroshot import hybrid_terms, score
    from nashc.runtime.train import digits_loaders, train
    from nashc.training import build_candidate

    def fresh() -> Any:
        return build_candidate(program, choice, seed)

    # 32 real training-split images (the first batch of a seeded shuffle), the same for all
    x = next(iter(digits_loaders(32, seed=seed)[0]))[0].clone()
    rows = []
    for i, choice in enumerate(archs):
        row: dict[str, Any] = {"id": i, "arch": arch_summary(choice),
                               "choice": {f"{k[0]}.{k[1]}": v for k, v in sorted(choice.items())},
                               "ops": DeclaredNetwork(program).op_counts(choice), "scores": {}, "ms": {}}
        for name in SCORE_NAMES:
            module = fresh()
            t0 = time.perf_counter()
            if name == "hybrid":
                torch.manual_seed(0)  # as `score` does
                e, t = hybrid_terms(module, x)
                value = e + t
                row["scores"]["zs_expressivity"], row["scores"]["zs_trainability"] = e, t
            else:
                value = score(name, module, x)
            row["ms"][name] = (time.perf_counter() - t0) * 1e3
            row["scores"][name] = float(value)
        module = fresh()
        tr, va = digits_loaders(batch, seed=seed)  # same data order for every architecture
        t0 = time.perf_counter()
        result = train(module, tr, va, epochs=epochs, lr=lr, seed=seed, optimizer="adam")
        row["train_s"] = time.perf_counter() - t0
        row["val_curve"] = [float(a) for a in result.val_accuracy]
        row["accuracy"] = float(result.val_accuracy[-1])
        rows.append(row)
        if on_row is not None:
            on_row(rows)
        sc = row["scores"]
        log(f"[{i + 1:2d}/{len(archs)}] acc {row['accuracy']:.3f}  zs {sc['hybrid']:8.3f}  "
            f"naswot {sc['naswot']:7.1f}  synflow {sc['synflow']:7.2f}  params "
            f"{sc['params']:6.0f}  train {row['train_s']:5.1f}s  {row['arch']}", flush=True)
    return rows


#: The scoring batch of every run (32 digits images): the search score's NASWOT term is
#: NASWOT divided by it.
SCORE_BATCH = 32


def _values(rows: list[dict[str, Any]], name: str) -> list[float]:
    """One value per row for a table row `name`; the search scores are computed here from
    the stored parts with the installed nashc's `combine_search_score`."""
    from nashc.passes.zeroshot import ADDER_PENALTY, combine_search_score

    if name == "search":
        return [combine_search_score(float(r["scores"]["naswot"]), int(r["ops"].get("adder", 0)),
                                     SCORE_BATCH) for r in rows]
    if name == "search_hybrid":
        return [float(r["scores"]["hybrid"]) - ADDER_PENALTY * int(r["ops"].get("adder", 0))
                for r in rows]
    if name == "minus_adders":
        return [-float(r["ops"].get("adder", 0)) for r in rows]
    if name == "minus_shifts":
        return [-float(r["ops"].get("shift", 0)) for r in rows]
    return [float(r["scores"][name]) for r in rows]


def _fmt(v: float, digits: int = 2) -> str:
    return "n/a" if not math.isfinite(v) else f"{v:+.{digits}f}"


def paired_tau_difference(acc: list[float], a: list[float], b: list[float], boot: int = 2000,
                          seed: int = 0) -> tuple[float, float, float]:
    """Paired bootstrap of tau(acc, a) - tau(acc, b): (2.5%, 97.5%, share of resamples > 0)."""
    import numpy as np
    from scipy import stats

    acc_a, ra, rb = np.asarray(acc), np.asarray(_rank_values(a)), np.asarray(_rank_values(b))
    rng = np.random.default_rng(seed)
    diffs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(boot):
            idx = rng.integers(0, len(acc), len(acc))
            d = (stats.kendalltau(acc_a[idx], ra[idx]).statistic
                 - stats.kendalltau(acc_a[idx], rb[idx]).statistic)
            if math.isfinite(d):
                diffs.append(d)
    if not diffs:
        return float("nan"), float("nan"), float("nan")
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return float(lo), float(hi), float(np.mean(np.asarray(diffs) > 0))


def rescore(run: dict[str, Any]) -> dict[str, Any]:
    """Recomputes `hybrid_score` (and the search score) of every row of a run with the
    installed nashc, same seed and batch, without retraining: the accuracies stay."""
    import torch

    from nashc.dsl import check_program, parse
    from nashc.passes.zeroshot import hybrid_terms
    from nashc.runtime.train import digits_loaders
    from nashc.training import build_candidate

    program = check_program(parse(run["space"], f"bench_zeroshot_{run['network']}.nash"))
    seed = run["seed"]
    x = next(iter(digits_loaders(32, seed=seed)[0]))[0].clone()
    for row in run["architectures"]:
        choice = {tuple(k.rsplit(".", 1)): v for k, v in row["choice"].items()}
        module = build_candidate(program, choice, seed)
        torch.manual_seed(0)
        t0 = time.perf_counter()
        e, t = hybrid_terms(module, x)
        row["ms"]["hybrid"] = (time.perf_counter() - t0) * 1e3
        sc = row["scores"]
        sc["hybrid"], sc["zs_expressivity"], sc["zs_trainability"] = e + t, e, t
        sc.pop("search", None)
        sc.pop("zero_shot", None)
    return run


def network_table(run: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    rows = run["architectures"]
    acc = [r["accuracy"] for r in rows]
    lines = ["| score | Kendall tau | tau 95% CI (bootstrap) | Spearman rho | "
             "acc. of top-1 pick | mean acc. of top-5 picks | search − this: tau diff. 95% CI "
             "| ms / evaluation (median) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    st: dict[str, Any] = {}
    search = _values(rows, "search")
    for name in ROW_NAMES:
        sc = _values(rows, name)
        c: dict[str, Any] = correlations(acc, sc)
        c["top1"], c["top5"] = top_picks(acc, sc)
        if name != "search":
            c["diff_lo"], c["diff_hi"], c["diff_share"] = paired_tau_difference(acc, search, sc)
            diff = f"[{_fmt(c['diff_lo'])}, {_fmt(c['diff_hi'])}]"
        else:
            diff = "–"
        # the search scores cost what their zero-shot part costs
        timed = {"search": "naswot", "search_hybrid": "hybrid"}.get(name, name)
        ms = sorted(r["ms"][timed] for r in rows) if timed in SCORE_NAMES else []
        c["ms"] = ms[len(ms) // 2] if ms else float("nan")
        lines.append(f"| {SCORE_LABELS[name]} | {_fmt(c['tau'])} | [{_fmt(c['tau_lo'])}, "
                     f"{_fmt(c['tau_hi'])}] | {_fmt(c['rho'])} | {c['top1']:.3f} | "
                     f"{c['top5']:.3f} | {diff} | "
                     + (f"{c['ms']:.0f} |" if ms else "– |"))
        st[name] = c
    return lines, st


def _within(rows: list[dict[str, Any]], name: str) -> float:
    """Kendall tau inside groups of equal #adder layers (groups of >= 4), weighted by size."""
    from scipy import stats

    groups: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(int(r["ops"].get("adder", 0)), []).append(r)
    taus, weights = [], []
    for g in groups.values():
        if len(g) < 4:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t = stats.kendalltau([r["accuracy"] for r in g], _rank_values(_values(g, name)))
        if math.isfinite(t.statistic):
            taus.append(float(t.statistic))
            weights.append(len(g))
    return sum(t * w for t, w in zip(taus, weights, strict=True)) / sum(weights) \
        if weights else float("nan")


def within_interval(rows: list[dict[str, Any]], name: str, boot: int = 1000,
                    seed: int = 0) -> tuple[float, float, float]:
    """`_within` and its bootstrap 95% interval (rows resampled with replacement):
    (tau, 2.5%, 97.5%); nan where the score is constant inside every group."""
    import numpy as np

    tau = _within(rows, name)
    if not math.isfinite(tau):
        return tau, float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(boot):
        idx = rng.integers(0, len(rows), len(rows))
        t = _within([rows[i] for i in idx], name)
        if math.isfinite(t):
            samples.append(t)
    lo, hi = np.percentile(samples, [2.5, 97.5]) if samples else (float("nan"),) * 2
    return tau, float(lo), float(hi)


NETWORK_TEXT = {
    "rescnn": "digits CNN with residual blocks (`stem 16 - block b1 16 - block b2 32 /2 - "
              "gap - fc 10`; op of every block conv in {conv, shift, adder}, block width "
              "{0.5, 1}, wbits {2, 4, 8}, abits {2, 4})",
    "mlp": "TFC-like MLP (`fc0 64 - fc1 64 - fc2 64 - fc 10`; op of fc1, fc2 in {conv, "
           "shift, adder}, wbits {2, 4, 8}, abits {2, 4} per layer)",
    "cnn": "plain digits CNN (`stem 16 - c1 32 - c2 32 /2 - gap - fc 10`)",
}


def render_runs(runs: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """The RESULTS.md section from the runs' rows (one run per network), and the
    statistics per network and row."""
    lines = [
        "## 3. Zero-shot metric quality (hybrid spaces on digits)",
        "",
        "For each network, architectures sampled uniformly (seeded, no repeats) from its "
        "hybrid space (written in the language in `bench/bench_zeroshot.py`), each scored "
        "on one batch of 32 real digits training images on a fresh module with the same "
        "seed, then trained from that initialisation with the project's QAT loop "
        "(`nashc.runtime.train.train`: Brevitas modules, Adam, cosine schedule, batch 64) "
        "and its validation accuracy measured. Kendall tau (tau-b) with a bootstrap 95% "
        "interval (2000 resamples); the paired bootstrap of tau(search score) − tau(row) "
        "says whether the search score ranks significantly better (interval above 0) or "
        "worse (below 0). Rows: the search score (what `metric zero_shot` ranks by: fewer "
        "adder layers first, then NASWOT, `nashc.passes.zeroshot.search_score`, computed "
        "from the stored NASWOT and adder count), the search score before (fewer adder "
        "layers, then `hybrid_score`), nashc's `hybrid_score`, NASWOT, SynFlow (−inf: no signal, ranks last), the "
        "parameter count, and the op-count priors (fewer adder / shift layers is better).",
    ]
    summary = []
    for run in runs:
        rows = run["architectures"]
        tab, st = network_table(run)
        within = {n: within_interval(rows, n)
                  for n in ("hybrid", "naswot", "synflow", "params", "minus_shifts")}
        acc = [r["accuracy"] for r in rows]
        n_add = sum(1 for r in rows if r["ops"].get("adder", 0) > 0)
        lines += [
            "",
            f"**{run['network']}**: {NETWORK_TEXT.get(run['network'], run['network'])}; "
            f"space {run['space_size']:,}; {len(rows)} architectures ({n_add} with an adder "
            f"layer), {run['epochs']} epochs (lr {run['lr']:g}), validation "
            f"{run['n_val']} images; accuracies {min(acc):.3f}..{max(acc):.3f}.",
            "",
            *tab,
            "",
            "Kendall tau inside groups with the same number of adder layers (what the "
            "adder prior cannot rank; the tie-break a search score adds), bootstrap 95% "
            "interval: " + ", ".join(
                f"{SCORE_LABELS[n].replace('**', '')} {_fmt(w[0])} [{_fmt(w[1])}, "
                f"{_fmt(w[2])}]" for n, w in within.items()) + ".",
        ]
        st["within"] = {n: w[0] for n, w in within.items()}
        summary.append((run["network"], st))
    lines += ["", "**Reading (generated from the numbers above).** " + _reading(summary)]
    return "\n".join(lines), dict(summary)


def _reading(summary: list[tuple[str, dict[str, Any]]]) -> str:
    sents = []
    for net, st in summary:
        ranked = sorted((n for n in ROW_NAMES if math.isfinite(st[n]["tau"])),
                        key=lambda n: -st[n]["tau"])
        order = ", ".join(f"{SCORE_LABELS[n].replace('**', '')} {_fmt(st[n]['tau'])}"
                          for n in ranked)
        better = [n for n in ROW_NAMES if n != "search" and st[n].get("diff_lo", -1) > 0]
        worse = [n for n in ROW_NAMES if n != "search" and st[n].get("diff_hi", 1) < 0]
        tied = [n for n in ROW_NAMES if n != "search" and n not in better and n not in worse
                and math.isfinite(st[n]["tau"])]
        hy = st["hybrid"]
        sents.append(
            f"{net}: by Kendall tau {order}. The search score is significantly better than "
            + (", ".join(SCORE_LABELS[n].replace("**", "") for n in better) or "none")
            + (", significantly worse than " + ", ".join(SCORE_LABELS[n] for n in worse)
               if worse else "")
            + (", and not separable from " + ", ".join(SCORE_LABELS[n] for n in tied)
               if tied else "")
            + f" at this n. nashc's hybrid_score alone has tau {_fmt(hy['tau'])} against "
            f"{_fmt(st['minus_adders']['tau'])} for the adder-count prior.")
    beats_all = all(all(st[n].get("diff_lo", -1) > 0 for n in ROW_NAMES if n != "search")
                    for _, st in summary)
    both = [n for n in ("hybrid", "naswot", "synflow", "params")
            if all(st["within"].get(n, float("nan")) > 0 for _, st in summary)]
    sents.append(
        "So no zero-shot score beats the op-count prior: most of what any score gets right "
        "here is that adder layers train slower at this budget, and Kendall tau-b rewards "
        "the prior's ties (breaking them with any weak signal lowers tau-b). A search still "
        "needs an order among candidates with the same number of adder layers (else its "
        "Pareto front keeps the fastest, i.e. narrowest and lowest-bit, of each group); "
        "inside those groups "
        + (", ".join(SCORE_LABELS[n].replace("**", "") for n in both)
           + (" ranks" if len(both) == 1 else " rank") + " positively on both networks, "
           "so the search ranks by the adder count "
           "first and " + SCORE_LABELS[both[0]].replace("**", "") + " second."
           if both else "no score ranks positively on both networks.")
        if not beats_all else
        "The search score beats every baseline outside the intervals on both networks.")
    return " ".join(sents)


def collect(network: str, n: int, epochs: int | None, seed: int,
            json_path: Path | None) -> dict[str, Any]:
    """Samples `n` architectures of `network`'s space, scores and trains each; the raw
    rows (written to `json_path` after every architecture, so a cut run keeps its rows)."""
    from nashc.dsl import check_program, parse
    from nashc.runtime.train import digits_loaders

    t_start = time.perf_counter()
    program = check_program(parse(NETWORK_SPACES[network], f"bench_zeroshot_{network}.nash"))
    tr_cfg = program.file.train
    epochs = epochs if epochs is not None else tr_cfg.epochs
    lr, batch = float(tr_cfg.lr), int(tr_cfg.batch)
    archs = sample_architectures(program.choices, n, seed)
    n_val = sum(int(y.numel()) for _, y in digits_loaders(batch, seed=seed)[1])
    space_size = math.prod(len(v) for v in program.choices.values())
    meta = {"network": network, "n": n, "epochs": epochs, "lr": lr, "batch": batch,
            "seed": seed, "space_size": space_size, "n_val": n_val,
            "space": NETWORK_SPACES[network]}

    def save(rows: list[dict[str, Any]]) -> None:
        if json_path is not None:
            json_path.write_text(json.dumps({**meta, "seconds": time.perf_counter() - t_start,
                                             "architectures": rows}, indent=1, default=str))

    rows = evaluate_architectures(program, archs, epochs, lr, batch, seed, on_row=save)
    save(rows)
    return {**meta, "seconds": time.perf_counter() - t_start, "architectures": rows}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="8 architectures, 1 epoch (smoke test)")
    ap.add_argument("--no-write", action="store_true", help="do not update bench/RESULTS.md")
    ap.add_argument("--networks", nargs="+", default=["rescnn", "mlp"],
                    choices=sorted(NETWORK_SPACES), help="networks to measure (default both)")
    ap.add_argument("--n", type=int, default=None,
                    help="architectures per network (default 100; quick 8)")
    ap.add_argument("--epochs", type=int, default=None,
                    help="training epochs per architecture (default: the train section; quick 1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (default 1: the machine's cores are shared, and "
                    "oversubscribed threads make both training and timings erratic)")
    ap.add_argument("--json", type=Path, default=None,
                    help="write the statistics here, and the raw rows per network to "
                    "STEM_NETWORK.json beside it")
    ap.add_argument("--render", type=Path, nargs="+", default=None,
                    help="no training: render the section from these JSON files")
    ap.add_argument("--rescore", action="store_true",
                    help="with --render: recompute hybrid_score with the installed nashc "
                    "(and write it back to the files) before rendering")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    import torch

    torch.set_num_threads(max(1, args.threads))
    if args.render:
        runs = [json.loads(p.read_text()) for p in args.render]
        if args.rescore:
            runs = [rescore(r) for r in runs]
            for p, r in zip(args.render, runs, strict=True):
                p.write_text(json.dumps(r, indent=1, default=str))
    else:
        n = args.n if args.n is not None else (8 if args.quick else 100)
        epochs = 1 if args.quick and args.epochs is None else args.epochs
        runs = []
        for net in args.networks:
            path = (args.json.with_name(f"{args.json.stem}_{net}{args.json.suffix or '.json'}")
                    if args.json is not None else None)
            runs.append(collect(net, n, epochs, args.seed, path))
    body, stats = render_runs(runs)
    print()
    print(body)
    if args.json is not None:
        args.json.write_text(json.dumps({"networks": [r["network"] for r in runs],
                                         "stats": stats}, indent=1, default=str))
    if not args.no_write:
        write_section("zeroshot", body, command_line())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
