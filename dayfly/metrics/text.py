"""Prometheus' text exposition format (version 0.0.4): families, samples, escaped labels."""

from __future__ import annotations

from collections.abc import Iterable

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


class Exposition:
    """Accumulates lines; each family is declared once, before its samples."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, labels: dict[str, str], value: float) -> None:
        if labels:
            inner = ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items())
            self.lines.append(f"{name}{{{inner}}} {_number(value)}")
        else:
            self.lines.append(f"{name} {_number(value)}")

    def simple(self, name: str, kind: str, help_text: str,
               samples: Iterable[tuple[dict[str, str], float]]) -> None:
        """A whole counter or gauge family at once."""
        self.family(name, kind, help_text)
        for labels, value in samples:
            self.sample(name, labels, value)

    def histogram(self, name: str, help_text: str, series: Iterable[tuple[dict[str, str], object]]
                  ) -> None:
        """A histogram family from (labels, metrics.observer.Histogram) pairs."""
        self.family(name, "histogram", help_text)
        for labels, hist in series:
            for le, n in hist.cumulative():  # type: ignore[attr-defined]
                self.sample(f"{name}_bucket", {**labels, "le": le}, n)
            self.sample(f"{name}_sum", labels, hist.sum)  # type: ignore[attr-defined]
            self.sample(f"{name}_count", labels, hist.count)  # type: ignore[attr-defined]

    def render(self) -> str:
        return "\n".join(self.lines) + "\n"
