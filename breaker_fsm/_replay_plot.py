"""The timeline of replays: ``plot`` draws each policy's states over the recorded failure rate.

Part of :mod:`breaker_fsm.replay`, which re-exports the public names. matplotlib (the ``plot``
extra) is imported only when a plot is drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    import os

    from ._replay_calls import Call
    from .replay import Replay

#: Band colours of the states a replay visits.
_STATE_COLOURS: Final = {"closed": "#d9f0d3", "open": "#f4a582", "half_open": "#fee08b"}
_PLOT_HINT: Final = "plotting needs matplotlib: pip install 'breaker-fsm[plot]'"


def plot(
    path: str | os.PathLike[str],
    calls: Sequence[Call],
    replays: Sequence[Replay],
    *,
    labels: Sequence[str] | None = None,
    bins: int = 200,
) -> None:
    """Draw one timeline per replay: the breaker's state as bands, the failure rate as a line.

    The rolling failure rate is that of the recorded calls (failed ÷ judged, over about a
    fortieth of the span), the same on every panel, so policies compare at a glance. The
    format follows the suffix of ``path`` (``.png``, ``.svg``, or any other matplotlib knows).

    Raises:
        ImportError: matplotlib is not installed (the ``plot`` extra).
    """
    require_matplotlib()
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    names = list(labels) if labels is not None else [f"policy {i + 1}" for i in range(len(replays))]
    start = min((call.at for call in calls), default=0.0)
    end = max([*(replay.end for replay in replays), start + 1e-9])
    centres, rates = _rolling_failure_rate(calls, start, end, bins)
    figure = Figure(figsize=(10, 1.9 * max(1, len(replays)) + 0.6), layout="constrained")
    axes = figure.subplots(max(1, len(replays)), 1, sharex=True, squeeze=False)[:, 0]
    for ax, replay, name in zip(axes, replays, names, strict=False):
        for state, spans in _state_spans(replay, start, end).items():
            ax.broken_barh(
                spans, (0, 1), facecolors=_STATE_COLOURS.get(state, "#cccccc"), linewidth=0
            )
        ax.plot(centres, rates, color="#b2182b", linewidth=1.2)
        ax.set_ylim(0, 1)
        ax.set_xlim(start, end)
        ax.set_ylabel("failure rate")
        ax.set_title(
            f"{name}: refused {replay.refused} of {replay.calls}, "
            f"{replay.failures_let_through} failures let through, "
            f"{replay.successes_refused} successes refused",
            loc="left",
            fontsize=9,
        )
    axes[-1].set_xlabel("time (s)")
    handles = [Patch(color=colour, label=state) for state, colour in _STATE_COLOURS.items()]
    figure.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=8)
    figure.savefig(path)


def require_matplotlib() -> None:
    """Import matplotlib, or raise ``ImportError`` saying how to install it."""
    try:
        import matplotlib.figure  # noqa: F401 - imported to learn whether it can be
    except ImportError as exc:
        raise ImportError(_PLOT_HINT) from exc


def _rolling_failure_rate(
    calls: Sequence[Call], start: float, end: float, bins: int
) -> tuple[list[float], list[float]]:
    """The recorded failure rate at the centre of each of ``bins`` slices of the span."""
    width = (end - start) / bins
    failed = [0] * bins
    judged = [0] * bins
    for at, outcome, _ in calls:
        if outcome in ("success", "failure"):
            slot = min(int((at - start) / width), bins - 1)
            judged[slot] += 1
            failed[slot] += outcome == "failure"
    span = max(1, bins // 40)  # the rolling window, in slices
    centres: list[float] = []
    rates: list[float] = []
    for slot in range(bins):
        low = max(0, slot - span + 1)
        seen = sum(judged[low : slot + 1])
        if seen:
            centres.append(start + (slot + 0.5) * width)
            rates.append(sum(failed[low : slot + 1]) / seen)
    return centres, rates


def _state_spans(replay: Replay, start: float, end: float) -> dict[str, list[tuple[float, float]]]:
    """Each state's ``(start, width)`` intervals over ``[start, end]``, for ``broken_barh``."""
    spans: dict[str, list[tuple[float, float]]] = {}
    state, since = "closed", start
    for record in replay.trail:
        # max(): with overlapping calls a transition may be stamped before the previous one
        spans.setdefault(state, []).append((since, max(0.0, record.monotonic - since)))
        state, since = record.target, record.monotonic
    spans.setdefault(state, []).append((since, max(0.0, end - since)))
    return spans
