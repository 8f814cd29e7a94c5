"""The GPU check: run a preset's whole pipeline on this machine and say where the time went.

Prints the wall time per stage (embeddings, trials, export, evaluation), how many trials ran at
once (from the sweep's report timestamps), how busy the GPU was during the trials (``nvidia-smi``
sampled every 0.5 s; "not measured" without it) and the leaderboard; writes the same as JSON.

    python bench/gpu_pipeline.py [--preset gpu] [--lab /tmp/gpu-lab] [--out bench/results/gpu_pipeline.json]

Runs on any machine: with no GPU the preset's GPU shares must be dropped (or use ``--preset smoke``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from diffusion.lab.store import LabStore  # noqa: E402
from diffusion.lab.tables import SCORES, TRIAL_HISTORY, TableStore  # noqa: E402
from jobs import pipeline, sweep  # noqa: E402


@dataclass
class GpuSampler:
    """``nvidia-smi``'s utilisation of GPU 0, sampled in a thread: (time, percent) pairs."""

    interval_ms: int = 500
    samples: list[tuple[float, float]] = field(default_factory=list)
    _process: subprocess.Popen | None = None

    def start(self) -> bool:
        """Start sampling; False where there is no nvidia-smi."""
        if shutil.which("nvidia-smi") is None:
            return False
        self._process = subprocess.Popen(["nvidia-smi", "--id=0", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                                          f"-lms={self.interval_ms}"], stdout=subprocess.PIPE, text=True)
        threading.Thread(target=self._read, daemon=True).start()
        return True

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            try:
                self.samples.append((time.time(), float(line.strip())))
            except ValueError:
                continue

    def stop(self) -> None:
        """Stop sampling."""
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)

    def busy(self, start: float, end: float) -> dict[str, float] | None:
        """Share of samples with any utilisation, and the mean utilisation, within [start, end]."""
        inside = [u for t, u in self.samples if start <= t <= end]
        if not inside:
            return None
        return {"busy_fraction": sum(u > 0 for u in inside) / len(inside), "mean_utilisation_pct": sum(inside) / len(inside),
                "samples": len(inside)}


def trials_at_once(history: pd.DataFrame) -> dict[str, float]:
    """Most and mean trials running at once, from each trial's first and last report time (Tune's timestamps)."""
    spans = []
    columns = TRIAL_HISTORY
    for _, reports in history.groupby(columns.trial_id):
        first = reports.sort_values(columns.timestamp).iloc[0]
        spans.append((float(first[columns.timestamp] - first[columns.time_total_s]), float(reports[columns.timestamp].max())))
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    running = most = 0
    area, last = 0.0, events[0][0]
    for moment, change in events:
        area += running * (moment - last)
        running, last = running + change, moment
        most = max(most, running)
    wall = events[-1][0] - events[0][0]
    return {"most": most, "mean": area / wall if wall > 0 else float(most), "trials": len(spans), "window_start": events[0][0],
            "window_end": events[-1][0]}


def main() -> int:
    """Run the pipeline, then print and save the report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="gpu")
    parser.add_argument("--lab", default="/tmp/gpu-pipeline-lab", help="a fresh lab store (removed first if local)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "gpu_pipeline.json"))
    args = parser.parse_args()
    if "://" not in args.lab:
        shutil.rmtree(args.lab, ignore_errors=True)
    request = sweep.check_inputs(pipeline.parse_args(["--preset", args.preset, "--lab", args.lab]))
    sampler = GpuSampler()
    measured = sampler.start()
    started = time.time()
    outcome = pipeline.run_pipeline(request)
    sampler.stop()
    store = LabStore(args.lab)
    tables = TableStore(store)
    concurrency = trials_at_once(tables.read(TRIAL_HISTORY))
    gpu = sampler.busy(concurrency["window_start"], concurrency["window_end"]) if measured else None
    board = tables.read(SCORES) if SCORES.name in tables.names() else SCORES.empty()
    report = {"preset": args.preset, "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
              "wall_s": time.time() - started, "stage_s": outcome.seconds, "trials_at_once": concurrency,
              "gpu_during_trials": gpu, "status": outcome.status}
    print("\n| stage | wall s |\n|---|---|")
    for stage, seconds in outcome.seconds.items():
        print(f"| {stage} | {seconds:.1f} |")
    print(f"\ntrials at once: at most {concurrency['most']}, on average {concurrency['mean']:.2f} ({concurrency['trials']} trials)")
    print("GPU during the trials: " + (f"busy in {gpu['busy_fraction']:.0%} of {gpu['samples']} samples, mean utilisation "
                                       f"{gpu['mean_utilisation_pct']:.0f}%" if gpu else "not measured (no nvidia-smi)"))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2, default=str))
    print(f"report: {args.out}; {len(board)} score rows in {store.root}")
    return outcome.status


if __name__ == "__main__":
    sys.exit(main())
