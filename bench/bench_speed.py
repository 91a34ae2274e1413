"""Benchmark 4: search speed of nashc.

Three figures, on the example files of examples/:

* **zero-shot rate**: candidates scored per second by the coarse stage
  (`nashc.pipeline.CoarseEvaluator`: build the PyTorch module, zero-shot score on the
  file's scoring batch, analytic coarse fps bound), over N distinct random candidates of
  the file's space, with 1 and 2 worker processes. Worker start-up (spawning processes,
  importing torch) is timed apart, as a one-off per compile;
* **full-estimate rate**: candidates per second through the fine stage
  (`nashc.pipeline._finn_stage`: calibrate, export to QONNX, lower through FINN, the
  coarse-to-fine folding search inside the budget, FINN's estimate), on a few of those
  candidates;
* **compile wall time**: `nashc compile` (`compile_file`) of each example as written,
  with the per-step split from its report. The architecture search is capped at
  `--search-cap` seconds (the report says whether the cap stopped it).

Usage:

    python bench/bench_speed.py [--quick] [--no-write] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import command_line, write_section  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def sample_choices(choices: dict[tuple[str, str], tuple[Any, ...]], n: int,
                   seed: int) -> list[dict[tuple[str, str], Any]]:
    """`n` distinct candidates drawn uniformly from the space (seeded)."""
    rng = random.Random(seed)
    keys = sorted(choices)
    size = math.prod(len(choices[k]) for k in keys)
    seen: set[tuple[Any, ...]] = set()
    out = []
    while len(out) < min(n, size):
        c = {k: rng.choice(choices[k]) for k in keys}
        key = tuple(c[k] for k in keys)
        if key not in seen:
            seen.add(key)
            out.append(c)
    return out


def _state(path: Path, workdir: Path) -> Any:
    import nashc.pipeline as pl

    state = pl.CompileState(path=path, opts=pl.CompileOptions(progress=False), workdir=workdir)
    pl.step_parse(state)
    search = state.program.file.search
    n = search.metric_batch if search is not None else 32
    if hasattr(pl, "_input_batch"):  # before the candidate interface (baseline commits)
        state.batch = pl._input_batch(state, n)
    else:
        state.network.prepare(n, state.seed)
    return state


def coarse_rate(path: Path, n: int, jobs: int, seed: int, workdir: Path) -> dict[str, Any]:
    """Candidates per second of the coarse stage of the `nashc` that is imported (this
    tree's, or a baseline commit's when run by `_measure_in_subprocess`)."""
    import nashc.pipeline as pl

    state = _state(path, workdir)
    if hasattr(pl, "CoarseContext"):  # before the candidate interface (baseline commits)
        ctx = pl.CoarseContext(state.program, state.seed, state.batch, state.budget,
                               state.clock_mhz)
        choices = sample_choices({k: tuple(v) for k, v in state.program.choices.items()}, n,
                                 seed)
        evaluator = pl.CoarseEvaluator(ctx, jobs)
    else:
        from functools import partial

        from nashc.candidate import evaluate_candidate

        evaluate = partial(evaluate_candidate, state.network, seed=state.seed,
                           hardware=pl._hardware(state))
        choices = sample_choices(state.network.choices(), n, seed)
        evaluator = pl.CoarseEvaluator(evaluate, jobs)
    t0 = time.perf_counter()
    try:
        # warm-up: spawns the workers (jobs > 1) and runs every import once
        evaluator([choices[0]] * max(jobs, 1))
        startup = time.perf_counter() - t0
        t1 = time.perf_counter()
        cands = evaluator(choices)
        secs = time.perf_counter() - t1
    finally:
        evaluator.close()
    assert len(cands) == len(choices)
    return {"example": path.name, "jobs": jobs, "n": len(cands), "seconds": secs,
            "per_s": len(cands) / secs, "startup_s": startup,
            "scores": [float(c.score) for c in cands],
            "scores_finite": sum(math.isfinite(c.score) and c.score > -1e9 for c in cands)}


#: The last commit of main before issue 13's kernels and scoring changes: the baseline
#: the zero-shot rate is compared against, measured in the same run.
BASELINE_REF = "b2d63af"
_PACKAGES = {"nashc": "nashc", "nashc/dsl": "dsl", "nashc/passes": "passes",
             "nashc/runtime": "runtime", "nashc/targets": "targets"}


def baseline_tree(ref: str, dest: Path) -> Path | None:
    """The `nashc` package of commit `ref` laid out under `dest` for PYTHONPATH (git
    archive of its folders), or None when git or the commit is not available."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    src = dest / "src"
    src.mkdir(parents=True, exist_ok=True)
    folders = sorted(set(_PACKAGES.values()))
    try:
        data = subprocess.run(["git", "-C", str(root), "archive", ref, *folders],
                              check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(src)], input=data, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    pkg = dest / "pkg"
    for target, folder in sorted(_PACKAGES.items()):
        (pkg / target).parent.mkdir(parents=True, exist_ok=True)
        (src / folder).rename(pkg / target)
    return pkg


def _measure_in_subprocess(path: Path, n: int, jobs: int, seed: int, workdir: Path,
                           pythonpath: Path | None) -> dict[str, Any]:
    """`coarse_rate` in a fresh interpreter importing nashc from `pythonpath` (a baseline
    tree) or from this tree (None)."""
    import subprocess

    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    out = workdir / f"coarse_{path.stem}_{jobs}_{'old' if pythonpath else 'new'}.json"
    workdir.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, str(Path(__file__).resolve()), "--coarse-worker",
                    str(path), str(n), str(jobs), str(seed), str(out)], env=env, check=True)
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def finn_rate(path: Path, n: int, seed: int, workdir: Path) -> dict[str, Any]:
    from nashc.dsl.errors import NashcError
    from nashc.pipeline import Candidate, _finn_stage

    state = _state(path, workdir)
    choices = sample_choices({k: tuple(v) for k, v in state.program.choices.items()}, n,
                             seed + 1)
    times, fps, errors = [], [], []
    for i, choice in enumerate(choices):
        cand = Candidate(dict(choice))
        t0 = time.perf_counter()
        try:
            _finn_stage(state, cand, i)
        except NashcError as err:
            arch = ", ".join(f"{layer}.{dim}={v}" for (layer, dim), v in sorted(choice.items()))
            errors.append(f"{arch}: {str(err).splitlines()[0][:160]}")
            times.append(time.perf_counter() - t0)
            continue
        times.append(time.perf_counter() - t0)
        fps.append(cand.fps)
    ok = len(fps)
    return {"example": path.name, "n": len(choices), "ok": ok, "seconds": sum(times),
            "per_candidate_s": times, "per_s": len(choices) / sum(times), "fps": fps,
            "errors": errors}


def compile_time(path: Path, cap: float | None, jobs: int | None, workdir: Path,
                 survivors: int | None = None) -> dict[str, Any]:
    from nashc.pipeline import DEFAULT_SURVIVORS, CompileOptions, compile_file

    t0 = time.perf_counter()
    _, report = compile_file(path, CompileOptions(
        output=workdir / f"{path.stem}_out", progress=False, jobs=jobs, search_seconds=cap,
        survivors=survivors or DEFAULT_SURVIVORS))
    wall = time.perf_counter() - t0
    s = report["search"]
    return {"example": path.name, "wall_s": wall, "candidates": s["candidates_evaluated"],
            "space": s["space_size"], "finn": s["finn_evaluated"],
            "interrupted": s["interrupted"], "stop_reason": s["stop_reason"],
            "cap_s": cap, "steps_s": report.get("steps_seconds", {}),
            "trained": any(p.get("accuracy") is not None for p in report["pareto"]),
            "survivors": survivors or DEFAULT_SURVIVORS,
            "lowering_failures": sum("was not lowered" in n for n in report.get("notes", []))}


def _load() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    tfc, cnv, res8 = (EXAMPLES / f for f in ("tfc_digits.nash", "cnv_cifar.nash",
                                            "resnet8_cifar.nash"))
    coarse_files = [tfc] if args.quick else [tfc, res8]
    finn_files = [tfc] if args.quick else [tfc, res8]
    compile_files = [tfc] if args.quick else [tfc, cnv, res8]
    jobs_list = [1] if args.quick else [1, 2]
    out: dict[str, Any] = {"coarse": [], "finn": [], "compile": [], "baseline": None}
    old = None
    if args.baseline != "none":
        old = baseline_tree(args.baseline, workdir / "baseline")
        out["baseline"] = args.baseline if old is not None else None
        if old is None:
            print(f"baseline {args.baseline}: not available (no git checkout?), new code only")
    for f in coarse_files:
        for jobs in jobs_list:
            # baseline and new back to back, so the machine's load affects both alike
            wd = workdir / f"coarse_{f.stem}_{jobs}"
            r = _measure_in_subprocess(f, args.n, jobs, args.seed, wd, None)
            if old is not None:
                b = _measure_in_subprocess(f, args.n, jobs, args.seed, wd, old)
                r["baseline"] = {k: b[k] for k in ("n", "seconds", "per_s", "startup_s")}
                r["max_score_diff"] = max(abs(x - y) for x, y in zip(r["scores"], b["scores"],
                                                                     strict=True))
            out["coarse"].append(r)
            base = (f"; baseline {r['baseline']['per_s']:.2f}/s" if "baseline" in r else "")
            print(f"zero-shot {f.name:20s} jobs {jobs}: {r['n']} candidates in "
                  f"{r['seconds']:.1f} s = {r['per_s']:.2f}/s (start-up {r['startup_s']:.1f} s)"
                  + base, flush=True)
    if args.coarse_only:
        return out
    for f in finn_files:
        r = finn_rate(f, args.finn_n, args.seed, workdir / f"finn_{f.stem}")
        out["finn"].append(r)
        print(f"FINN stage {f.name:20s}: {r['n']} candidates in {r['seconds']:.1f} s = "
              f"{r['per_s']:.3f}/s ({r['ok']} lowered)", flush=True)
    for f in compile_files:
        cap = args.search_cap if f != tfc or args.quick else None
        if args.uncapped and not args.quick:
            cap = None
        r = compile_time(f, cap, 1 if args.quick else None, workdir,
                         survivors=2 if args.quick else None)
        out["compile"].append(r)
        print(f"compile {f.name:20s}: {r['wall_s']:.0f} s, {r['candidates']} candidates"
              f"{' (search capped)' if r['interrupted'] else ''}", flush=True)
    return out


def render(res: dict[str, Any], args: argparse.Namespace, load: tuple[str, str]) -> str:
    lines = [
        "## 4. Search speed",
        "",
        f"Zero-shot stage: {args.n} distinct random candidates of each file's space "
        "(`CoarseEvaluator`: build the module, full zero-shot score on the file's scoring "
        "batch, analytic fps bound); worker start-up (process spawn + imports) timed "
        "apart. Baseline: the same measurement, in the same run right after, with nashc "
        f"as of commit `{res.get('baseline') or 'n/a'}` (before issue 13's work: the grid "
        "adder kernel, in-place scoring, module reuse across candidates (`ModulePool`), "
        "the layer work read off the score's forward pass, and the search score's "
        "tie-break NASWOT instead of hybrid_score); score diff = largest |new - baseline| "
        "score over the same candidates, which differ by design (the search score is "
        "defined differently now; `tests/runtime/test_build_pool.py` checks that reused "
        "modules score bit-identically to fresh ones).",
        "",
        "| example | workers | candidates | baseline s | baseline candidates / s | s | "
        "candidates / s | speed-up | score diff | start-up s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in res["coarse"]:
        b = r.get("baseline")
        bs = (f"{b['seconds']:.1f} | {b['per_s']:.2f}" if b else "- | -")
        sp = f"{r['per_s'] / b['per_s']:.2f}x" if b else "-"
        diff = f"{r['max_score_diff']:.1e}" if "max_score_diff" in r else "-"
        lines.append(f"| {r['example']} | {r['jobs']} | {r['n']} | {bs} | {r['seconds']:.1f} | "
                     f"{r['per_s']:.2f} | {sp} | {diff} | {r['startup_s']:.1f} |")
    if res["finn"] or res["compile"]:
        lines += [
            "",
            "Fine stage (`_finn_stage`: calibrate, export to QONNX, FINN lowering incl. hybrid "
            "layers, coarse-to-fine folding search, FINN estimate), one process:",
            "",
            "| example | candidates | lowered | seconds | candidates / s | s per candidate |",
            "|---|---:|---:|---:|---:|---|",
        ]
        for r in res["finn"]:
            per = ", ".join(f"{t:.1f}" for t in r["per_candidate_s"])
            lines.append(f"| {r['example']} | {r['n']} | {r['ok']} | {r['seconds']:.1f} | "
                         f"{r['per_s']:.3f} | {per} |")
        lines += [
            "",
            "`nashc compile` wall time of each example as written (default workers: "
            f"min(2, cores)){'; quick mode: 1 worker, 2 survivors' if args.quick else ''}:",
            "",
            "| example | wall s | space size | candidates scored | through FINN | search capped? "
            "| trained | parse / search / accel. search / train / baseline / verify s |",
            "|---|---:|---:|---:|---:|---|---|---|",
        ]
        order = ("parse", "search", "accelerator_search", "train", "baseline", "verify")
        for r in res["compile"]:
            st = r["steps_s"]
            split = " / ".join(f"{st[k]:.0f}" if k in st else "-" for k in order)
            capped = (f"yes, at {r['cap_s']:g} s" if r["interrupted"] else
                      ("no (cap " + f"{r['cap_s']:g} s not reached)" if r["cap_s"] else "no cap"))
            lines.append(f"| {r['example']} | {r['wall_s']:.0f} | {r['space']:,} | "
                         f"{r['candidates']} | {r['finn']} | {capped} | "
                         f"{'yes' if r['trained'] else 'no (digits cannot feed 3x32x32)'} | "
                         f"{split} |")
    errs = [(r["example"], e) for r in res["finn"] for e in r["errors"]]
    if errs:
        lines += ["", "Candidates the fine stage could not lower (timed until the error):", ""]
        lines += [f"- {ex}: {e}" for ex, e in errs]
    busy = max(float(x) for x in load) > 1.0
    lines += ["", f"Load average (1 min) before / after: {load[0]} / {load[1]} on "
              f"{os.cpu_count()} cores" + (
                  " — other jobs were running on the machine, so every time here is "
                  "disturbed, and the 2-worker figures most." if busy else ".")]
    return "\n".join(lines)


def reading(res: dict[str, Any], load: tuple[str, str] = ("0", "0")) -> str:
    parts = []
    by = {(r["example"], r["jobs"]): r for r in res["coarse"]}
    by_ex = list(dict.fromkeys(r["example"] for r in res["coarse"]))
    for ex in dict.fromkeys(r["example"] for r in res["coarse"]):
        one, two = by.get((ex, 1)), by.get((ex, 2))
        txt = f"{ex}: {one['per_s']:.1f} candidates/s scored zero-shot with 1 worker" if one \
            else ex
        if one and one.get("baseline"):
            txt += (f" (baseline {one['baseline']['per_s']:.1f}/s: "
                    f"{one['per_s'] / one['baseline']['per_s']:.2f}x)")
        if one and two:
            txt += (f", {two['per_s']:.1f}/s with 2 ({two['per_s'] / one['per_s']:.2f}x; "
                    f"plus {two['startup_s']:.0f} s to start the workers)")
        parts.append(txt)
    fin = "; ".join(f"{r['example']}: {r['seconds'] / max(r['n'], 1):.1f} s per candidate"
                    + (f" (only {r['ok']} of {r['n']} lowered, the others stopped at a FINN "
                       "lowering error listed above, so this figure is a lower bound)"
                       if r["ok"] < r["n"] else "")
                    for r in res["finn"])
    two = [r for r in res["coarse"] if r["jobs"] == 2]
    busy = max(float(x) for x in load) > 1.0
    workers = ""
    if two and busy and any(
            r["per_s"] < 1.3 * by[(r["example"], 1)]["per_s"] for r in two):
        workers = (" A second worker process bought little or nothing here: the machine was "
                   "shared (load average above 1 on 2 cores), so the second core was mostly "
                   "busy with other jobs, and this run does not measure the parallel speed-up "
                   "cleanly (rerun on an idle machine for that); the worker start-up is paid "
                   "once per compile.")
    zs = res["coarse"]
    ratio = ""
    if zs and res["finn"]:
        best_zs = {r["example"]: max(x["per_s"] for x in zs if x["example"] == r["example"])
                   for r in res["finn"] if any(x["example"] == r["example"] for x in zs)}
        ratios = [f"{best_zs[r['example']] * r['seconds'] / max(r['n'], 1):.0f}x ({r['example']})"
                  for r in res["finn"] if r["example"] in best_zs]
        ratio = ("The zero-shot stage is " + ", ".join(ratios) + " faster per candidate "
                 "than the full FINN estimate, which is why only a handful of survivors "
                 "go through FINN.")
    compiles = "; ".join(
        f"{r['example']} {r['wall_s']:.0f} s" + (" (search capped)" if r["interrupted"] else "")
        for r in res["compile"])
    best = {ex: max(r["per_s"] for r in res["coarse"] if r["example"] == ex) for ex in by_ex}
    goals = []
    for ex, goal in (("resnet8_cifar.nash", 30.0), ("tfc_digits.nash", 500.0)):
        if ex in best:
            goals.append(f"{ex} {best[ex]:.1f}/s against the goal of {goal:g}/s ("
                         + ("met" if best[ex] >= goal else "not met") + ")")
    target = (" Issue 13's goals for full-score candidates per second: " + "; ".join(goals)
              + "." if goals else "")
    return ("**Reading.** " + "; ".join(parts) + "." + workers + target
            + (" Full estimate (FINN lowering + folding search + estimate): " + fin + ". "
               + ratio if fin else "")
            + (" `nashc compile` end to end: " + compiles + "." if compiles else ""))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="tfc_digits only: 10 candidates, 1 worker, 1 FINN candidate, "
                    "compile with search capped at 10 s and 2 survivors")
    ap.add_argument("--no-write", action="store_true", help="do not update bench/RESULTS.md")
    ap.add_argument("--json", type=Path, help="also write the raw figures here")
    ap.add_argument("--n", type=int, default=None, help="zero-shot candidates per example")
    ap.add_argument("--finn-n", type=int, default=None, help="FINN candidates per example")
    ap.add_argument("--search-cap", type=float, default=None,
                    help="cap on the architecture search of cnv/resnet8 compiles (s)")
    ap.add_argument("--coarse-only", action="store_true",
                    help="only the zero-shot rate (baseline vs new); no FINN, no compile")
    ap.add_argument("--uncapped", action="store_true",
                    help="compile cnv/resnet8 with no cap on the architecture search")
    ap.add_argument("--baseline", default=BASELINE_REF,
                    help=f"git commit whose zero-shot rate is measured in the same run "
                    f"(default {BASELINE_REF}; 'none' to skip)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--coarse-worker", nargs=5, metavar=("FILE", "N", "JOBS", "SEED", "OUT"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.coarse_worker:
        logging.disable(logging.WARNING)
        warnings.filterwarnings("ignore")
        f, n, jobs, seed, out = args.coarse_worker
        with tempfile.TemporaryDirectory(prefix="bench_speed_w_") as tmp:
            r = coarse_rate(Path(f), int(n), int(jobs), int(seed), Path(tmp))
        Path(out).write_text(json.dumps(r))
        return 0
    args.n = args.n or (10 if args.quick else 40)
    args.finn_n = args.finn_n or (1 if args.quick else 3)
    args.search_cap = args.search_cap or (10.0 if args.quick else 120.0)
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    load0 = _load()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_speed_") as tmp:
        res = run(args, Path(tmp))
    load1 = _load()
    body = render(res, args, (load0, load1)) + "\n\n" + reading(res, (load0, load1))
    body += f"\n\nTotal benchmark time {time.perf_counter() - t0:.0f} s.\n"
    print()
    print(body)
    if args.json:
        args.json.write_text(json.dumps({**res, "load": [load0, load1]}, indent=1, default=str))
    if not args.no_write:
        # the zero-shot comparison alone goes to its own section, the full run's stays
        if args.coarse_only:
            body = body.replace("## 4. Search speed", "## 4b. Zero-shot scoring rate: "
                                "baseline commit vs this one", 1)
        write_section("speed-coarse" if args.coarse_only else "speed", body, command_line())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
