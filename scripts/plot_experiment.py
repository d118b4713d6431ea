#!/usr/bin/python3
"""Plots a `cmdistill experiment` result: tradeoff.png (held-out correctness against
constraint satisfaction per method, mean and 95% CI over seeds, seeds as dots),
curves.png (training curves of reward, constraint satisfaction and KL, mean over seeds) and,
when the answers were classified (the embedded synthetic task), reasoning.png (reasoning
success and the foreign style's share per method, with the warm start and the teacher).

usage: /usr/bin/python3 scripts/plot_experiment.py DIR/results.json --out DIR
Needs Debian's python3-matplotlib (scripts/setup.sh installs it).
"""
import argparse
import csv
import json
import os
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def err(e):
    v, lo, hi = e["value"], e.get("low"), e.get("high")
    if lo is None or hi is None:
        return v, 0.0, 0.0
    return v, max(0.0, v - lo), max(0.0, hi - v)


def smooth(values, window=5):
    """Trailing moving average (training batches are small and noisy)."""
    out, acc = [], []
    for v in values:
        acc.append(v)
        acc = acc[-window:]
        out.append(sum(acc) / len(acc))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("results")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    with open(a.results) as f:
        res = json.load(f)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    # Sampled evaluation (several samples per problem) resolves smaller effects than
    # greedy: plot it when the experiment has it.
    sampled = bool(res.get("sampled_methods"))
    summary = res["sampled_methods"] if sampled else res["methods"]
    methods = [m["method"] for m in summary]
    if len(methods) > len(colors):  # one distinct colour per row
        colors = list(plt.cm.tab20.colors)
    color = {m: colors[i % len(colors)] for i, m in enumerate(methods)}

    fig, ax = plt.subplots(figsize=(9, 5))
    for run in res["runs"]:
        mm = run["sampled"]["metrics"] if sampled and "sampled" in run else run["metrics"]
        ax.scatter(mm["constraint_satisfaction"]["value"], mm["correctness"]["value"],
                   color=color[run["method"]], alpha=0.35, s=18)
    # The soft_lagrangian λ sweep as a front (rows "soft_lagrangian@...=λ").
    front = sorted((m for m in summary if m["method"].startswith("soft_lagrangian")),
                   key=lambda m: m["constraint_satisfaction"]["value"])
    if len(front) > 1:
        ax.plot([m["constraint_satisfaction"]["value"] for m in front],
                [m["correctness"]["value"] for m in front], "--", color="gray", lw=1,
                label="soft_lagrangian λ front")
    for m in summary:
        x, xl, xh = err(m["constraint_satisfaction"])
        y, yl, yh = err(m["correctness"])
        ax.errorbar(x, y, xerr=[[xl], [xh]], yerr=[[yl], [yh]], fmt="o", capsize=3,
                    color=color[m["method"]], label=m["method"])
    for r in res.get("reference", []):
        if ("sampled" in r["name"]) != sampled:
            continue
        mm = r["metrics"]
        if mm["constraint_satisfaction"]["n"]:
            ax.scatter(mm["constraint_satisfaction"]["value"], mm["correctness"]["value"],
                       marker="x", color="black")
            ax.annotate(r["name"], (mm["constraint_satisfaction"]["value"],
                                    mm["correctness"]["value"]), fontsize=8)
        else:
            ax.axhline(mm["correctness"]["value"], ls="--", color="gray", lw=0.8)
            ax.annotate(r["name"], (0.02, mm["correctness"]["value"]), fontsize=8)
    mode = "sampled" if sampled else "greedy"
    ax.set_xlabel(f"constraint satisfaction rate (held-out, {mode})")
    ax.set_ylabel(f"final-answer correctness (held-out, {mode})")
    # Zoom to the points (means and reference), not to the wide across-seed intervals.
    xs = [m["constraint_satisfaction"]["value"] for m in summary]
    ys = [m["correctness"]["value"] for m in summary]
    for r in res.get("reference", []):
        if ("sampled" in r["name"]) == sampled and r["metrics"]["constraint_satisfaction"]["n"]:
            xs.append(r["metrics"]["constraint_satisfaction"]["value"])
            ys.append(r["metrics"]["correctness"]["value"])
    if xs:
        pad_x = max(0.05, 0.15 * (max(xs) - min(xs)))
        pad_y = max(0.05, 0.15 * (max(ys) - min(ys)))
        ax.set_xlim(max(-0.02, min(xs) - pad_x), min(1.02, max(xs) + pad_x))
        ax.set_ylim(max(-0.02, min(ys) - pad_y), min(1.02, max(ys) + pad_y))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    out1 = os.path.join(a.out, "tradeoff.png")
    fig.savefig(out1, dpi=110)

    curves = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for run in res["runs"]:
        path = run.get("curve_csv")
        if not path or not os.path.exists(path):
            continue
        with open(path) as f:
            for row in csv.DictReader(f):
                for key in ("reward", "satisfaction", "kl"):
                    curves[run["method"]][key][int(row["step"])].append(float(row[key]))
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    for ax, key, title in zip(axes, ["reward", "satisfaction", "kl"],
                              ["task reward", "constraint satisfaction", "mean per-token KL"]):
        for m in methods:
            pts = sorted(curves[m][key].items())
            if pts:
                steps = [s for s, _ in pts]
                mean = [sum(v) / len(v) for _, v in pts]
                ax.plot(steps, mean, color=color[m], alpha=0.2, lw=0.8)
                ax.plot(steps, smooth(mean), color=color[m], label=m)
        ax.set_title(title + " (training batches, 5-step mean)")
        ax.set_xlabel("learner step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    out2 = os.path.join(a.out, "curves.png")
    fig.savefig(out2, dpi=110)
    written = [out1, out2]

    # Reasoning success (correct AND valid scratchpad AND the teacher's style) and the
    # teacher-foreign style's share, per method: only where answers were classified.
    rows = [(m["method"], m) for m in summary if m.get("reasoning_success", {}).get("n")]
    refs = [(r["name"], r["metrics"]) for r in res.get("reference", [])
            if ("sampled" in r["name"]) == sampled
            and r["metrics"].get("reasoning_success", {}).get("n")]
    if rows:
        rows = refs + rows
        fig, axes = plt.subplots(1, 2, figsize=(12, 0.42 * len(rows) + 1.4), sharey=True)
        names = [n for n, _ in rows]
        ypos = list(range(len(rows)))[::-1]
        for ax, key, title in zip(axes, ["reasoning_success", "foreign_style_share"],
                                  ["reasoning success (correct, valid, teacher's style)",
                                   "teacher-foreign style share"]):
            for y, (n, m) in zip(ypos, rows):
                v, lo, hi = err(m[key])
                ax.barh(y, v, xerr=[[lo], [hi]], capsize=3,
                        color=color.get(n, "lightgray"))
            ax.set_title(f"{title}, held-out, {mode}", fontsize=9)
            ax.grid(alpha=0.3, axis="x")
        axes[0].set_yticks(ypos)
        axes[0].set_yticklabels(names, fontsize=8)
        fig.tight_layout()
        out3 = os.path.join(a.out, "reasoning.png")
        fig.savefig(out3, dpi=110)
        written.append(out3)
    print("wrote " + ", ".join(written))


if __name__ == "__main__":
    main()
