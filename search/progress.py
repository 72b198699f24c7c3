"""Progress of a running search: a bar on a terminal, plain periodic lines elsewhere.

Both read the study itself, so they work the same whether trials run in this process or in
worker processes. Progress goes to stderr; stdout is kept for results.
"""

import math
import time
from typing import TextIO

import optuna
from optuna.trial import TrialState
from tqdm import tqdm

FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def _format_seconds(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class SearchProgress:
    """Tracks the trials finished since this run started, out of ``n_trials``.

    Args:
        stream: where to write (a terminal gets a progress bar).
        n_trials: trials this run will start, or the study-wide total with ``study_wide``.
        deadline: ``time.time()`` at which ``--timeout`` ends the run, if any.
        study_wide: count every finished trial of the study (for ``--max-trials``), not only
            those since this run started.
        line_interval_s: the least time between two plain lines.
    """

    def __init__(
        self,
        study: optuna.Study,
        stream: TextIO,
        *,
        n_trials: int,
        deadline: float | None,
        study_wide: bool = False,
        line_interval_s: float = 10.0,
    ) -> None:
        self.study = study
        self.stream = stream
        self.n_trials = n_trials
        self.deadline = deadline
        self.line_interval_s = line_interval_s
        self.started = time.time()
        self.n_finished_before = 0 if study_wide else self._count_finished()
        self.n_done = 0
        self._last_line = -math.inf
        self._bar = tqdm(total=n_trials, file=stream, unit="trial") if stream.isatty() else None

    def _count_finished(self) -> int:
        return len(self.study.get_trials(deepcopy=False, states=FINISHED_STATES))

    def _best_text(self) -> str:
        try:
            best = self.study.best_trial
        except ValueError:
            return "no trial complete yet"
        return f"best val L1 {best.value:.4f} (trial {best.number})"

    def _seconds_left(self, now: float) -> float | None:
        estimates = []
        if self.n_done:
            estimates.append((now - self.started) / self.n_done * (self.n_trials - self.n_done))
        if self.deadline is not None:
            estimates.append(max(0.0, self.deadline - now))
        return min(estimates) if estimates else None

    def update(self, *, force: bool = False) -> None:
        """Re-read the study and redraw the bar, or print a line if one is due."""
        self.n_done = min(self.n_trials, self._count_finished() - self.n_finished_before)
        now = time.time()

        if self._bar is not None:
            self._bar.n = self.n_done
            self._bar.set_postfix_str(self._best_text(), refresh=True)
            return

        if not force and now - self._last_line < self.line_interval_s:
            return
        self._last_line = now
        left = self._seconds_left(now)
        left_text = "unknown" if left is None else _format_seconds(left)
        print(
            f"progress: {self.n_done}/{self.n_trials} trials finished | {self._best_text()} | "
            f"elapsed {_format_seconds(now - self.started)} | left {left_text}",
            file=self.stream,
            flush=True,
        )

    def close(self) -> None:
        """Draw the final state and release the terminal line."""
        self.update(force=True)
        if self._bar is not None:
            self._bar.close()
