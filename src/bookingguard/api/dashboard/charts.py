"""Inline SVG charts computed server-side: no JavaScript library, no build step."""

from __future__ import annotations

from dataclasses import dataclass

from bookingguard.api.dashboard.queries import DayRate

__all__ = ["TrendChart", "trend_chart"]

WIDTH = 640
HEIGHT = 180
PAD_X = 40
PAD_Y = 20


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    label: str
    value: str


@dataclass(frozen=True)
class TrendChart:
    width: int
    height: int
    points: list[Point]
    polyline: str
    y_ticks: list[tuple[float, str]]
    floor: float


def trend_chart(days: list[DayRate]) -> TrendChart:
    """The consistency-rate line over ``days``; days without calls are left out of the line."""
    rates = [day.rate for day in days if day.rate is not None]
    floor = min([*rates, 90.0])
    floor = max(0.0, float(int(floor // 5) * 5))
    span_y = 100.0 - floor or 1.0
    step = (WIDTH - 2 * PAD_X) / max(1, len(days) - 1)
    points = []
    for index, day in enumerate(days):
        if day.rate is None:
            continue
        x = PAD_X + index * step
        y = PAD_Y + (100.0 - day.rate) / span_y * (HEIGHT - 2 * PAD_Y)
        points.append(Point(round(x, 1), round(y, 1), day.day.strftime("%b %d"), f"{day.rate:.2f}"))
    ticks = []
    for fraction in (0.0, 0.5, 1.0):
        value = floor + fraction * span_y
        y = PAD_Y + (1 - fraction) * (HEIGHT - 2 * PAD_Y)
        ticks.append((round(y, 1), f"{value:.0f}%"))
    return TrendChart(
        width=WIDTH,
        height=HEIGHT,
        points=points,
        polyline=" ".join(f"{p.x},{p.y}" for p in points),
        y_ticks=ticks,
        floor=floor,
    )
