"""Draw bench/latency.png from a bench/run.py report (run by bench/run.py in the matplotlib venv).

    python bench/plot.py bench/latest.json bench/latency.png
"""
import datetime
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {"goeryx": "#1f77b4", "pyeryx": "#ff7f0e", "native": "#7f7f7f"}
LABELS = {"goeryx": "goeryx", "pyeryx": "pyeryx", "native": "native CPython"}


def find(table, measurement):
    for row in table:
        if row["measurement"] == measurement:
            return row
    return {}


def bars(ax, groups, systems, fmt):
    """groups: [(label, {system: value})]; one bar per system present in a group."""
    width = 0.8 / len(systems)
    for i, s in enumerate(systems):
        xs, ys = [], []
        for g, (_, vals) in enumerate(groups):
            if vals.get(s) is not None:
                xs.append(g + (i - (len(systems) - 1) / 2) * width)
                ys.append(vals[s])
        b = ax.bar(xs, ys, width, color=COLORS[s], label=LABELS[s])
        ax.bar_label(b, labels=[fmt(y) for y in ys], fontsize=7, padding=1, rotation=90)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([g for g, _ in groups], fontsize=8)


def ms(v):
    if v >= 1000:
        return f"{v / 1000:.1f} s"
    if v >= 10:
        return f"{v:.0f} ms"
    if v >= 1:
        return f"{v:.1f} ms"
    return f"{v * 1000:.0f} µs"


def main(src, dst):
    rep = json.load(open(src))
    t = rep["table"]
    systems = [s for s in ("goeryx", "pyeryx", "native")
               if any(s in r for r in t)]

    def row(name, scale=1.0, only=None):
        r = find(t, name)
        return {s: r[s] * scale for s in systems if r.get(s) is not None and (only is None or s in only)}

    sandboxes = ("goeryx", "pyeryx")
    lat = [
        ("new Sandbox\n+execute p50", row("Sandbox()+execute p50", only=sandboxes)),
        ("new Sandbox\n+execute p99", row("Sandbox()+execute p99", only=sandboxes)),
        ("…incl. del\np50", row("incl. dropping the sandbox, p50", only=sandboxes)),
        ("CPU per\nSandbox+execute", row("CPU per run (user+sys)", only=sandboxes)),
        ("Session\n.execute p50", row("Session.execute('x = 1') p50", 1e-3)),
        ("first sandbox\nwarm cache", row("first sandbox, warm cache")),
        ("first sandbox\nempty cache", row("first sandbox, empty cache")),
        ("new process\nspawn→exit", row("fresh process wall, warm cache")),
    ]
    comp = [(p, row(f"compute {p}")) for p in ("loop", "fib", "strdict", "total")]
    comp.append(("CPU per\nround", row("process CPU per round")))

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(14, 5.4), gridspec_kw={"width_ratios": [2.2, 1.1]})
    bars(a1, lat, systems, ms)
    a1.set_yscale("log")
    a1.set_ylabel("milliseconds (log scale, lower is better)")
    a1.set_title("latency (native: Session row = exec(), process row = python -c)", fontsize=9)
    a1.legend(fontsize=8, loc="upper left")
    a1.margins(y=0.25)
    bars(a2, comp, systems, lambda v: f"{v:.2f}")
    a2.set_ylabel("seconds (lower is better)")
    a2.set_title("compute (bench/compute.py): best wall time\nper part, and process CPU per round", fontsize=9)
    a2.margins(y=0.15)
    date = datetime.datetime.fromisoformat(rep["date"]).strftime("%Y-%m-%d %H:%M")
    v = rep["versions"]
    fig.suptitle(f"goeryx {v.get('goeryx')} vs pyeryx {v.get('pyeryx')} vs native CPython {v.get('native')}"
                 f" — {date}, {rep['host']}: {rep['cpus']} cores ({rep['cpu']})", fontsize=10)
    loads = rep.get("load_avg_1min") or []
    share = rep.get("cpu_share")
    foot = []
    if loads:
        foot.append(f"1-minute load average during the run: {min(loads):.1f}–{max(loads):.1f} on {rep['cpus']} cores")
    if share:
        foot.append(f"CPU share a spinning thread got: median {share['median']:.2f} (1.00 = idle machine)")
    if foot:
        fig.text(0.5, 0.005, "; ".join(foot), ha="center", fontsize=7, color="#555")
    fig.tight_layout(rect=(0, 0.02, 1, 0.95))
    fig.savefig(dst, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
