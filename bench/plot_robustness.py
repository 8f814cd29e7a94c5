"""Draw the corruption-robustness curves stored by ``python -m diffusion robustness`` as one PNG.

FD / floor against severity, one panel per corruption, one line per embedding with the spread
over seeds as a band; log scale, so that a rise of 2x means the same in every embedding.

    python bench/plot_robustness.py --lab ./lab --out docs/robustness.png
"""

from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from diffusion.lab.store import LabStore  # noqa: E402
from diffusion.lab.tables import ROBUSTNESS, TableStore  # noqa: E402

COLOURS = {"vae": "tab:blue", "classifier": "tab:orange", "pixels": "tab:gray"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lab", default="./lab")
    parser.add_argument("--out", default="docs/robustness.png")
    args = parser.parse_args()
    curve = TableStore(LabStore(args.lab)).read(ROBUSTNESS)
    corruptions = list(dict.fromkeys(curve[ROBUSTNESS.corruption]))
    figure, axes = plt.subplots(1, len(corruptions), figsize=(4.2 * len(corruptions), 3.6), sharey=True)
    for axis, corruption in zip(axes, corruptions):
        rows = curve[curve[ROBUSTNESS.corruption] == corruption]
        for embedding, group in rows.groupby(ROBUSTNESS.embedding, sort=False):
            levels = group.groupby(ROBUSTNESS.severity)[ROBUSTNESS.ratio].agg(["mean", "min", "max"])
            colour = COLOURS.get(embedding)
            axis.plot(levels.index, levels["mean"], marker="o", ms=3, label=embedding, color=colour)
            axis.fill_between(levels.index, levels["min"], levels["max"], alpha=0.25, color=colour)
        axis.axhline(1.0, color="black", lw=0.8, ls="--")
        axis.set_yscale("log")
        axis.set_title(corruption.replace("_", " "))
        axis.set_xlabel("severity")
    axes[0].set_ylabel("FD / floor (real vs real = 1)")
    axes[0].legend(title="embedding")
    n, seeds = int(curve[ROBUSTNESS.n].iloc[0]), curve[ROBUSTNESS.seed].nunique()
    figure.suptitle(f"Corruption robustness on the embedded MNIST test set, N = {n}, {seeds} seeds (band: min-max)")
    figure.tight_layout()
    figure.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
