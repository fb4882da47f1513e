"""A plain-language reading of a study's headline numbers.

Each sentence is built from the summary records alone, so it says what the data say
and nothing else: where non-convergence is largest and smallest along each group's
axis, how it compares with the theory's lower bound, whether any certified inactive
neuron revived, and how often runs without one still failed.
"""

from __future__ import annotations

import math

from relutrap.report.figures import Group, groups, optimizer_label


def percent(value: float) -> str:
    """A probability as a percentage with the precision it deserves."""
    if value in (0.0, 1.0):
        return f"{value:.0%}"
    if 0.995 <= value < 1:  # never round up to 100%
        return f"{math.floor(1000 * value) / 10:.1f}%"
    if 0 < value < 0.005:  # never round down to 0%
        return f"{math.ceil(1000 * value) / 10:.1f}%"
    return f"{value:.0%}"


def _with_interval(entry: dict) -> str:
    return (
        f"{percent(entry['fraction'])} "
        f"[{percent(entry['low'])}, {percent(entry['high'])}]"
    )


def _extremes(records: list[dict], key: str, group: Group) -> str | None:
    """'96% [93%, 98%] of Adam runs', or the lowest and highest over optimizers."""
    known = [r for r in records if (r.get(key) or {}).get("fraction") is not None]
    if not known:
        return None
    ordered = sorted(known, key=lambda record: record[key]["fraction"])
    low, high = ordered[0], ordered[-1]
    if len(known) == 1:
        return f"{_with_interval(low[key])} of {optimizer_label(low)} runs"
    if low[key]["fraction"] == high[key]["fraction"]:
        return f"{percent(low[key]['fraction'])} of the runs of every optimizer"
    return (
        f"between {_with_interval(low[key])} "
        f"({optimizer_label(low, group.records)}) and {_with_interval(high[key])} "
        f"({optimizer_label(high, group.records)}) of the runs"
    )


def _theory_clause(cells: list[dict], group: Group) -> str:
    """'; the theory's probability ... is 38% (p = 0.375), measured 36% [..]', one
    figure per distinct per-neuron probability (a part may sweep initializations)."""
    by_p: dict[float, list[dict]] = {}
    for record in cells:
        if record.get("theory_some_first_layer_inactive") is not None:
            by_p.setdefault(record["p_first_layer_neuron"], []).append(record)
    if not by_p:
        return ""
    several = len(by_p) > 1
    figures = []
    for p, members in by_p.items():
        schemes = ", ".join(dict.fromkeys(member["init"] for member in members))
        figure = (
            f"{percent(members[0]['theory_some_first_layer_inactive'])} (p = {p:.4g}"
            + (f", {schemes} init" if several else "")
        )
        measured = _extremes(members, "some_first_layer_inactive", group)
        if measured is not None:
            figure += f"; measured: {measured}"
        figures.append(figure + ")")
    return (
        "; the theory's probability of a certified inactive first-layer neuron, "
        "1-(1-p)^l1, is " + " and ".join(figures)
    )


def _group_sentences(group: Group) -> list[str]:
    symbol = {"width": "width", "depth": "depth"}[group.axis]
    sentences = []
    values = group.values()
    ends = [values[0]] if len(values) == 1 else [values[0], values[-1]]
    for value in ends:
        cells = [record for record in group.records if record[group.axis] == value]
        tolerance = cells[0]["tolerance"]
        observed = _extremes(cells, "observed_nonconvergent", group)
        certified = _extremes(cells, "certified_nonconvergent", group)
        parts = [f"Part {group.title}, {symbol} {value}:"]
        if observed is not None and cells[0].get("reference") == "best run":
            parts.append(
                f"{observed} ended more than the tolerance {tolerance:g} (relative "
                "to the variance of the labels) above the best run of their cell;"
            )
        elif observed is not None:
            parts.append(
                f"{observed} did not converge (final risk above the tolerance "
                f"{tolerance:g});"
            )
        else:
            parts.append(
                "no observed verdict is given (the optimal risk is not known);"
            )
        parts.append(f"{certified} were certified not to converge from initialization")
        sentence = " ".join(parts)
        if group.axis == "width" and cells[0]["depth"] == 1:
            sentence += _theory_clause(cells, group)
        if group.axis == "depth":
            collapsed = _extremes(cells, "collapsed", group)
            sentence += f"; {collapsed} collapsed (some hidden layer inactive)"
        sentences.append(sentence + ".")
    return sentences


def reading(records: list[dict]) -> list[str]:
    """Sentences that state the study's headline numbers in words."""
    if not records:
        return ["No run of this study has finished yet."]
    sentences = []
    for group in groups(records):
        sentences.extend(_group_sentences(group))

    revived = sum(record["revived"] for record in records)
    if revived == 0:
        sentences.append(
            f"No neuron certified inactive at initialization was ever active again "
            f"(0 revivals in {len(records)} cells), as the theorem predicts for this "
            "class of optimizers."
        )
    else:
        cells = [record for record in records if record["revived"] > 0]
        broken = sum(record["premise_holds"] is False for record in cells)
        sentences.append(
            f"{revived} neurons certified inactive at initialization were active "
            f"again, in {len(cells)} cells ({broken} of them with an optimizer that "
            "breaks the theorem's premise)."
        )

    within = sum(record["certified_within_tolerance"] for record in records)
    certified = sum(record["certified_nonconvergent"]["count"] for record in records)
    if certified:
        sentences.append(
            f"Of the {certified} {'run' if certified == 1 else 'runs'} certified "
            f"not to converge, {within} ended "
            "within the tolerance anyway"
            + (
                "; every certified run also failed at the tolerance."
                if within == 0
                else " (the risk gap of a missing neuron was below the tolerance)."
            )
        )

    known = [
        record
        for record in records
        if record["converged_without_certified_inactive"] is not None
    ]
    healthy = sum(record["without_certified_inactive"] for record in known)
    if healthy:
        converged = sum(
            record["converged_without_certified_inactive"] for record in known
        )
        sentence = (
            f"Among the {healthy} runs without any certified inactive neuron, "
            f"{converged} ({percent(converged / healthy)}) converged"
        )
        if converged < healthy:
            sentence += (
                ": the others failed for reasons other than the theorem's "
                "mechanism, which is why observed non-convergence can sit above "
                "the certified one"
            )
        sentences.append(sentence + ".")
    return sentences
