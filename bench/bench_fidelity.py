"""Benchmark 6: does `metric fidelity` rank rewrites of a trained model by accuracy?

For a network loaded with `from`, `nashc compile` ranks candidates (graph rewrites of the
trained model: widths with compensation, weight/activation bits, shift swaps) by their
fidelity to the loaded model on a scoring batch of training images, then measures the
finalists' accuracy. This benchmark samples N candidates of a space, computes for each
the score exactly as `compile` does (`nashc.imported.LoadedNetwork`, 64 training images:
top-1 agreement with the loaded model, ties broken by the cosine similarity of the
outputs), its two parts alone, and the validation accuracy (359 digits images, no
fine-tuning). It reports Kendall tau (scipy.stats) of accuracy against each, and
against a naive baseline, the number of weight bits kept (sum over layers of weights x bits, i.e.
"bigger is better"), plus the accuracy of each score's top pick.

Spaces: the shipped `examples/tfc_import.nash`, and the same kind of space over a digits
CNN trained here (widths, bits and shift swaps of its three convs). Usage:

    python bench/bench_fidelity.py [--quick] [--no-write] [--n N]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import command_line, digits_convnet, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CNN_SPACE = """
space {
  width stem, c1, c2 in {0.5, 0.75, 1.0}
  wbits stem, c1, c2 in {2, 3, 4}
  abits stem, c1, c2 in {2, 3, 4}
  op    c1, c2       in {conv, shift}
}
search {
  metric fidelity batch 64
}
train {
  dataset digits
}
"""


def _programs(tmp: Path, epochs: int) -> list[tuple[str, Any]]:
    """(name, program) for the shipped TFC example and a CNN trained here."""
    from nashc.dsl import check_program, load, parse
    from nashc.runtime.build import export_qonnx_model
    from nashc.training import train_candidate

    out = [("tfc_import (shipped)", load(ROOT / "examples" / "tfc_import.nash"))]
    train_src = digits_convnet("cnn") + f"train {{\n  dataset digits\n  epochs {epochs}\n}}\n"
    trained = check_program(parse(train_src, "cnn_train.nash"))
    module, _ = train_candidate(trained, {}, seed=0)
    export_qonnx_model(module, trained.network, tmp / "cnn.onnx")
    (tmp / "cnn.nash").write_text('network cnn from "cnn.onnx"\n' + CNN_SPACE)
    out.append(("digits CNN (trained here)", load(tmp / "cnn.nash")))
    return out


def _weight_bits(model: Any) -> float:
    from nashc.passes.choices import layer_summary
    from nashc.passes.graph import weight_values

    summary = layer_summary(model)
    total = 0.0
    for node in model.graph.node:
        if node.name in summary:
            w, _ = weight_values(model, node.input[1])
            total += w.size * float(summary[node.name][2] or 8)
    return total


def evaluate(program: Any, n: int, seed: int) -> list[dict[str, float]]:
    from nashc.imported import LoadedNetwork, accuracy, fidelity
    from nashc.passes.nas import _sample
    from nashc.runtime.golden import SampleRunner
    from nashc.training import prepare_data

    gs = LoadedNetwork.load(program)
    gs.prepare(64, seed)
    data = prepare_data(program, seed)
    rng = random.Random(seed)
    seen: set[tuple[Any, ...]] = set()
    rows = []
    while len(rows) < n:
        choice = _sample(program.choices, rng)
        key = tuple(sorted(choice.items()))
        if key in seen:
            continue
        seen.add(key)
        model = gs.candidate(choice)
        score = gs.score(model)
        cos, agree = fidelity(SampleRunner(model).output(gs.batch), gs.reference)
        rows.append({"score": score, "cosine": cos, "agreement": agree,
                     "weight_bits": _weight_bits(model), "accuracy": accuracy(model, data.val)})
    return rows


def render(results: dict[str, list[dict[str, float]]], seed: int) -> str:
    from scipy.stats import kendalltau

    lines = [
        "## 6. Fidelity as the ranking of rewrites of a trained model",
        "",
        "Random candidates of a space over a trained model (the rewrites `nashc compile` "
        "searches for `network ... from`), no fine-tuning. Kendall tau of the validation "
        "accuracy (359 digits images) against each score, p-value in brackets, and the "
        "accuracy of each score's top-ranked candidate. `weight bits`: the weights x bits "
        f"kept, a size baseline. Seed {seed}.",
        "",
        "| space | candidates | accuracy range | tau score | tau cosine | tau agreement | "
        "tau weight bits | top pick: score | cosine | weight bits | best |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    taus = {}
    for name, rows in results.items():
        acc = [r["accuracy"] for r in rows]
        cells = []
        for key in ("score", "cosine", "agreement", "weight_bits"):
            tau, p = kendalltau([r[key] for r in rows], acc)
            taus[(name, key)] = tau
            cells.append(f"{tau:.2f} ({p:.1g})")
        picks = [f"{100 * max(rows, key=lambda r, k=k: r[k])['accuracy']:.1f}%"
                 for k in ("score", "cosine", "weight_bits")]
        lines.append(f"| {name} | {len(rows)} | {100 * min(acc):.1f}-{100 * max(acc):.1f}% | "
                     + " | ".join(cells) + " | " + " | ".join(picks)
                     + f" | {100 * max(acc):.1f}% |")
    better = sum(taus[(n, "score")] > taus[(n, "weight_bits")] for n in results)
    lines += ["", "`score` is what `metric fidelity` uses: top-1 agreement with the loaded "
              "model on the scoring batch, ties broken by the cosine.", "",
              f"**Reading (generated):** the score ranks accuracy better than the size "
              f"baseline in {better} of {len(results)} spaces ("
              + ", ".join(f"{n}: tau {taus[(n, 'score')]:.2f} vs "
                          f"{taus[(n, 'weight_bits')]:.2f}" for n in results)
              + "); the cosine alone: " + ", ".join(
                  f"{taus[(n, 'cosine')]:.2f}" for n in results) + "."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="8 candidates, 1 epoch (smoke test)")
    ap.add_argument("--no-write", action="store_true", help="do not update bench/RESULTS.md")
    ap.add_argument("--n", type=int, default=None, help="candidates per space (default 60)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    import torch

    torch.set_num_threads(1)
    n = args.n or (8 if args.quick else 60)
    t0 = time.perf_counter()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, program in _programs(Path(tmp), 1 if args.quick else 10):
            results[name] = evaluate(program, n, args.seed)
            print(f"{name}: {n} candidates ({time.perf_counter() - t0:.0f} s)", flush=True)
    body = render(results, args.seed)
    print()
    print(body)
    if not args.no_write:
        write_section("fidelity", body, command_line())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
