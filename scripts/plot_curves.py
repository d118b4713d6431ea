#!/usr/bin/python3
"""Plots one run's training curve (reward, constraint satisfaction, KL per learner step) and,
when the curve has them, where each step's time went (waiting, update, publish, checkpoint).

usage: /usr/bin/python3 scripts/plot_curves.py RUN/training_curve.csv --out curve.png
Needs Debian's python3-matplotlib (scripts/setup.sh installs it).
"""
import argparse
import csv

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("csv")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    with open(a.csv) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise SystemExit(f"{a.csv}: no steps")
    step = [int(r["step"]) for r in rows]
    phases = [p for p in ("wait_s", "update_s", "publish_s", "checkpoint_s") if p in rows[0]]
    fig, axes = plt.subplots(1, 4 if phases else 3, figsize=(16 if phases else 12, 3.2))
    for ax, key, title in zip(axes, ["reward", "satisfaction", "kl"],
                              ["task reward", "constraint satisfaction", "mean per-token KL"]):
        raw = [float(r[key]) for r in rows]
        smoothed, acc = [], []
        for v in raw:  # trailing 5-step mean: training batches are noisy
            acc = (acc + [v])[-5:]
            smoothed.append(sum(acc) / len(acc))
        ax.plot(step, raw, alpha=0.25, lw=0.8)
        ax.plot(step, smoothed, color="C0")
        ax.set_title(title)
        ax.set_xlabel("learner step")
        ax.grid(alpha=0.3)
    if phases:  # a stacked area per phase: what a step waited for, and what it computed
        ax = axes[3]
        ax.stackplot(step, *[[float(r[p] or 0) for r in rows] for p in phases],
                     labels=[p[:-2] for p in phases], alpha=0.8)
        ax.set_title("step time (s) by phase")
        ax.set_xlabel("learner step")
        ax.legend(loc="upper right", fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(a.out, dpi=110)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
