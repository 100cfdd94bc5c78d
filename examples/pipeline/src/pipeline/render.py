"""Render: a plain-text report, one line per city."""


def render(stats: dict[str, dict]) -> str:
    report = ""
    for city in sorted(stats):
        s = stats[city]
        report += f"{city:<12} n={s['n']:>5} mean={s['mean']:6.2f} max={s['max']:6.2f} rain={s['rain']:8.1f}\n"
    return report
