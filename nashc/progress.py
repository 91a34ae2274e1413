"""Progress of `nashc compile`: the hooks the pipeline calls, and two displays.

The pipeline (`nashc.pipeline`) knows only `CompileProgress`, whose methods do nothing;
it never imports rich. The CLI passes one of:

* `RichProgress` — live bars on a terminal (rich): the architecture search (candidates
  done / planned, candidates per second, time left, the best point so far) and the FINN
  stage (survivor i of n and its current lowering step), with one log line per step;
* `PlainProgress` — plain lines for logs, pipes and CI (a line per step, and on progress
  at most every `every` seconds), no cursor movement;
* `CompileProgress()` itself for `--quiet`.

`CallbackProgress` adapts the older `progress(msg: str)` callable of `compile_file`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import IO, Any

__all__ = ["CompileProgress", "CallbackProgress", "PlainProgress", "RichProgress",
           "planned_candidates", "format_seconds"]


def planned_candidates(strategy: str, space: int, *, samples: int = 500, population: int = 64,
                       generations: int = 20) -> int:
    """How many candidates a strategy evaluates at most (`nashc.passes.nas`): the whole
    space (exhaustive), `min(samples, space)` (random), `min(population + generations *
    max(1, population // 2), space)` (evolution: population/2 children a generation)."""
    if strategy == "exhaustive":
        return space
    if strategy == "random":
        return min(samples, space)
    return min(population + generations * max(1, population // 2), space)


def format_seconds(seconds: float) -> str:
    """`42 s`, `3 min 05 s`, `1 h 02 min`."""
    s = int(round(max(0.0, seconds)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


class CompileProgress:
    """Hooks of the compile pipeline; every method does nothing (the `--quiet` display).

    Call order: `step` for each pipeline step; inside `search`: `search_started` once,
    `search_advanced` after each batch of candidates, `search_finished`; inside the FINN
    stages (`accelerator_search`, `train`): `stage_started`, then per candidate
    `stage_candidate` and its `stage_step`s, then `stage_finished`. `message` is free text.
    """

    def step(self, name: str) -> None:
        """A pipeline step (`parse`, `search`, ...) starts."""

    def search_started(self, planned: int, deadline_s: float | None = None) -> None:
        """The architecture search starts; at most `planned` candidates, stopped after
        `deadline_s` seconds at the latest when given (it may finish sooner)."""

    def search_advanced(self, done: int, best: dict[str, float]) -> None:
        """`done` candidates scored so far; `best`: the best-scored one's "score" and
        "fps" (the coarse fps bound)."""

    def search_finished(self, done: int, stop_reason: str | None = None) -> None:
        """The search ended after `done` candidates (`stop_reason`: None, "time limit",
        "interrupted")."""

    def stage_started(self, what: str, total: int) -> None:
        """A per-candidate stage starts (`what`: e.g. "FINN lowering + folding")."""

    def stage_candidate(self, index: int, total: int, label: str = "") -> None:
        """Candidate `index` (0-based) of `total` starts; `label` says which."""

    def stage_step(self, name: str) -> None:
        """The current candidate reached sub-step `name` (a lowering step, an epoch...)."""

    def stage_finished(self) -> None:
        """The stage is done."""

    def message(self, text: str) -> None:
        """Anything else worth a line."""

    def close(self) -> None:
        """The run ended (normally or not): stop live displays."""


class CallbackProgress(CompileProgress):
    """Every hook as one line of text to `fn` (the older `progress(msg)` interface)."""

    def __init__(self, fn: Callable[[str], Any]) -> None:
        self.fn = fn
        self._planned = 0
        self._what = ""

    def step(self, name: str) -> None:
        self.fn(f"step {name}")

    def search_started(self, planned: int, deadline_s: float | None = None) -> None:
        self._planned = planned

    def search_advanced(self, done: int, best: dict[str, float]) -> None:
        self.fn(f"{done}/{self._planned} candidates scored; best score {best['score']:.3f}")

    def stage_started(self, what: str, total: int) -> None:
        self._what = what

    def stage_candidate(self, index: int, total: int, label: str = "") -> None:
        self.fn(f"{self._what} {index + 1}/{total}")

    def stage_step(self, name: str) -> None:
        self.fn(f"{self._what}: {name}")

    def message(self, text: str) -> None:
        self.fn(text)


class _Rate:
    """Candidates per second and time left of the search, from its start."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.planned = 0
        self.deadline_s: float | None = None

    def figures(self, done: int) -> tuple[float, float | None]:
        elapsed = time.monotonic() - self.t0
        rate = done / elapsed if elapsed > 0 else 0.0
        left = (self.planned - done) / rate if rate > 0 else None
        if self.deadline_s is not None:
            cap = max(0.0, self.deadline_s - elapsed)
            left = cap if left is None else min(left, cap)
        return rate, left


class PlainProgress(CompileProgress):
    """Plain timestamped lines on `stream` (no cursor movement): a line per step and
    candidate, search progress at most every `every` seconds and at its end."""

    def __init__(self, stream: IO[str], every: float = 10.0) -> None:
        self.stream = stream
        self.every = every
        self._last = 0.0
        self._rate = _Rate()
        self._what = ""
        self._done = 0
        self._best: dict[str, float] = {}

    def _line(self, text: str) -> None:
        self.stream.write(f"[{time.strftime('%H:%M:%S')}] {text}\n")
        self.stream.flush()

    def step(self, name: str) -> None:
        self._line(f"step {name}")

    def search_started(self, planned: int, deadline_s: float | None = None) -> None:
        self._rate = _Rate()
        self._rate.planned, self._rate.deadline_s = planned, deadline_s
        self._last = time.monotonic()
        cap = "" if deadline_s is None else f" (capped at {format_seconds(deadline_s)})"
        self._line(f"search: up to {planned} candidates{cap}")

    def _search_line(self, done: int) -> None:
        self._done = done
        rate, left = self._rate.figures(done)
        best = (f"; best score {self._best['score']:.3f} ({self._best['fps']:,.0f} fps bound)"
                if self._best else "")
        eta = "" if left is None or done >= self._rate.planned else \
            f", about {format_seconds(left)} left"
        self._line(f"search: {done}/{self._rate.planned} candidates, {rate:.1f}/s{eta}{best}")

    def search_advanced(self, done: int, best: dict[str, float]) -> None:
        self._best = best
        if time.monotonic() - self._last >= self.every:
            self._last = time.monotonic()
            self._search_line(done)

    def search_finished(self, done: int, stop_reason: str | None = None) -> None:
        if done != self._done:  # else the last line said it
            self._search_line(done)
        if stop_reason:
            self._line(f"search stopped early: {stop_reason}")

    def stage_started(self, what: str, total: int) -> None:
        self._what = what

    def stage_candidate(self, index: int, total: int, label: str = "") -> None:
        self._line(f"{self._what}: candidate {index + 1}/{total}" + (f" ({label})" if label
                                                                      else ""))

    def message(self, text: str) -> None:
        self._line(text)


class RichProgress(CompileProgress):
    """Live rich bars on `console` (a terminal): one for the search, one for the FINN
    stages; steps and messages are log lines above them (time, no source location)."""

    def __init__(self, console: Any) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.console = console
        self._rate = _Rate()
        # columns: what, bar, done/total, elapsed, "rate, time left", what it is doing
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(bar_width=20),
                            MofNCompleteColumn(), TimeElapsedColumn(),
                            TextColumn("{task.fields[rate]}"),
                            TextColumn("{task.fields[status]}"), console=console,
                            transient=False)
        self._search: Any = None
        self._stage: Any = None
        self._stage_t0 = time.monotonic()
        self._label = ""
        self._started = False

    def _start(self) -> None:
        if not self._started:
            self.bar.start()
            self._started = True

    def step(self, name: str) -> None:
        self.console.log(f"step {name}")

    def search_started(self, planned: int, deadline_s: float | None = None) -> None:
        self._start()
        self._rate = _Rate()
        self._rate.planned, self._rate.deadline_s = planned, deadline_s
        self._search = self.bar.add_task("search", total=planned, rate="", status="")

    def search_advanced(self, done: int, best: dict[str, float]) -> None:
        if self._search is None:
            return
        rate, left = self._rate.figures(done)
        self.bar.update(self._search, completed=done,
                        rate=f"{rate:.1f} cand/s" + ("" if left is None else
                                                     f", ~{format_seconds(left)} left"),
                        status=f"best {best['score']:.3f} ({best['fps']:,.0f} fps bound)")

    def search_finished(self, done: int, stop_reason: str | None = None) -> None:
        if self._search is None:
            return
        rate, _ = self._rate.figures(done)
        self.bar.update(self._search, completed=done, total=done,
                        rate=f"{rate:.1f} cand/s"
                        + ("" if not stop_reason else f", stopped: {stop_reason}"))
        self.bar.stop_task(self._search)

    def stage_started(self, what: str, total: int) -> None:
        self._start()
        self._stage_t0 = time.monotonic()
        self._stage = self.bar.add_task(what, total=total, rate="", status="")

    def stage_candidate(self, index: int, total: int, label: str = "") -> None:
        if self._stage is not None:
            elapsed = time.monotonic() - self._stage_t0
            left = (f"~{format_seconds(elapsed / index * (total - index))} left"
                    if index > 0 else "")
            self._label = f"candidate {index + 1}/{total}" + (f" ({label})" if label else "")
            self.bar.update(self._stage, completed=index, total=total, rate=left,
                            status=self._label)

    def stage_step(self, name: str) -> None:
        if self._stage is not None:
            self.bar.update(self._stage, status=f"{self._label}: {name}")

    def stage_finished(self) -> None:
        if self._stage is not None:
            task = self.bar.tasks[[t.id for t in self.bar.tasks].index(self._stage)]
            self.bar.update(self._stage, completed=task.total, rate="", status="done")
            self.bar.stop_task(self._stage)
            self._stage = None

    def message(self, text: str) -> None:
        self.console.log(text)

    def close(self) -> None:
        if self._started:
            self.bar.stop()
            self._started = False
