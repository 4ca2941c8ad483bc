"""CI rules over an analysis: ``wasted_bytes > 20MB``, ``efficiency < 0.9``, ``x > 50%``.

A rule is ``METRIC OPERATOR VALUE``. It fails when the comparison is true for an image, so it
reads as "fail if". VALUE is a number, a size with a unit (``B``, ``kB``/``KB``, ``MB``,
``GB``, ``TB`` are powers of 1000; ``KiB``, ``MiB``, ``GiB``, ``TiB`` powers of 1024), or, for
a byte metric, a percentage of the image's stored content bytes. Rules come from the command
line or from a TOML file whose top-level ``fail-if`` is a list of rule strings. The analysis
knows nothing of rules: :func:`evaluate` only reads a finished :class:`ImageAnalysis`.
"""

from __future__ import annotations

import math
import operator
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from edgetrim.analyze.result import ImageAnalysis
from edgetrim.errors import EdgetrimError, InvalidOptionError

_BYTES = "bytes"
_NUMBER = "number"

# metric name -> (unit kind, value of an analysis)
METRICS: dict[str, tuple[str, Callable[[ImageAnalysis], float]]] = {
    "wasted_bytes": (_BYTES, lambda a: a.waste.wasted_bytes),
    "overwritten_bytes": (_BYTES, lambda a: a.waste.overwritten_bytes),
    "deleted_bytes": (_BYTES, lambda a: a.waste.deleted_bytes),
    "duplicate_bytes": (_BYTES, lambda a: a.waste.duplicate_bytes),
    "likely_unused_bytes": (_BYTES, lambda a: a.waste.likely_unused_bytes),
    "toolchain_bytes": (_BYTES, lambda a: a.waste.likely_unused_by_kind["toolchain"]),
    "stored_bytes": (_BYTES, lambda a: a.waste.stored_bytes),
    "final_bytes": (_BYTES, lambda a: a.waste.final_bytes),
    "blob_bytes": (_BYTES, lambda a: a.blob_bytes),
    # The first name of blob_bytes, which existing rules may use. Its blobs may be uncompressed.
    "compressed_bytes": (_BYTES, lambda a: a.blob_bytes),
    "efficiency": (_NUMBER, lambda a: a.waste.efficiency),
    "layers": (_NUMBER, lambda a: len(a.layers)),
    "setuid_files": (_NUMBER, lambda a: len(a.surface.setuid)),
    "setgid_files": (_NUMBER, lambda a: len(a.surface.setgid)),
    "shells": (_NUMBER, lambda a: len(a.surface.shells)),
    "package_managers": (_NUMBER, lambda a: len(a.surface.package_managers)),
    "world_writable_dirs": (_NUMBER, lambda a: len(a.surface.world_writable_dirs)),
    # An unknown user (None) counts as root, so that a rule against root cannot pass by error.
    "runs_as_root": (_NUMBER, lambda a: 0 if a.surface.runs_as_root is False else 1),
}

_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}
_UNITS = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_RULE = re.compile(
    r"^\s*(?P<metric>[a-z_]+)\s*(?P<op>>=|<=|==|!=|>|<)\s*"
    r"(?P<number>\d+(\.\d+)?)\s*(?P<unit>%|[A-Za-z]+)?\s*$"
)


class PolicyFailedError(EdgetrimError):
    """One or more rules failed; the CLI exits with status 1."""

    exit_code = 1


@dataclass(frozen=True)
class Rule:
    """One parsed rule. ``percent`` means ``threshold`` is a fraction of ``stored_bytes``.

    ``exact_threshold`` is the same value as a fraction, without float rounding, from which
    a byte metric's limit is computed.
    """

    text: str
    metric: str
    op: str
    threshold: float
    percent: bool = False
    exact_threshold: Fraction | None = None

    def limit_for(self, analysis: ImageAnalysis) -> float:
        """Return the threshold in the metric's own unit for this image.

        A byte metric's limit is a whole number of bytes, rounded so that the rule gives the
        same verdict as the exact limit: ``> 500.5`` becomes ``> 500`` and ``< 500.5``
        becomes ``< 501``. ``==`` and ``!=`` compare with the nearest whole byte.
        """
        if METRICS[self.metric][0] != _BYTES:
            return self.threshold
        limit = Fraction(self.threshold) if self.exact_threshold is None else self.exact_threshold
        if self.percent:
            limit *= analysis.waste.stored_bytes
        if self.op in (">", "<="):
            return math.floor(limit)
        if self.op in ("<", ">="):
            return math.ceil(limit)
        return round(limit)


@dataclass(frozen=True)
class RuleOutcome:
    """A rule applied to one image: the measured value and whether the rule failed."""

    rule: Rule
    source: str
    value: float
    limit: float
    failed: bool


def parse_rule(text: str) -> Rule:
    """Parse ``METRIC OP VALUE``; raise InvalidOptionError naming the rule if it is malformed."""
    match = _RULE.match(text)
    if match is None:
        raise InvalidOptionError(
            f"invalid rule {text!r}: expected METRIC OPERATOR VALUE, "
            "for example 'wasted_bytes > 20MB' or 'efficiency < 0.9'"
        )
    metric = match["metric"]
    if metric not in METRICS:
        raise InvalidOptionError(
            f"invalid rule {text!r}: unknown metric {metric!r}; known metrics: "
            + ", ".join(sorted(METRICS))
        )
    kind = METRICS[metric][0]
    number = Fraction(match["number"])
    value = float(number)
    unit = match["unit"]
    if unit is None:
        return Rule(text, metric, match["op"], value, exact_threshold=number)
    if kind != _BYTES:
        raise InvalidOptionError(
            f"invalid rule {text!r}: {metric} is a plain number and takes no unit {unit!r}"
        )
    if unit == "%":
        fraction = number / 100
        return Rule(text, metric, match["op"], float(fraction), True, fraction)
    factor = _UNITS.get(unit.lower())
    if factor is None:
        raise InvalidOptionError(
            f"invalid rule {text!r}: unknown unit {unit!r}; use B, kB, MB, GB, TB, "
            "KiB, MiB, GiB, TiB or %"
        )
    return Rule(text, metric, match["op"], value * factor, exact_threshold=number * factor)


def load_rules(path: Path) -> list[Rule]:
    """Read the rules of a TOML file: ``fail-if = ["wasted_bytes > 20MB", ...]``."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidOptionError(f"{path}: rules file not found") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InvalidOptionError(f"{path}: cannot read the rules file: {exc}") from None
    texts = data.get("fail-if")
    unknown = sorted(set(data) - {"fail-if"})
    if unknown:
        raise InvalidOptionError(
            f"{path}: unknown key {unknown[0]!r}; the rules file has only 'fail-if'"
        )
    if not isinstance(texts, list) or not all(isinstance(text, str) for text in texts):
        raise InvalidOptionError(f"{path}: 'fail-if' must be a list of rule strings")
    rules: list[Rule] = []
    for text in texts:
        try:
            rules.append(parse_rule(text))
        except InvalidOptionError as exc:
            raise InvalidOptionError(f"{path}: {exc}") from None
    return rules


def evaluate(rules: list[Rule], analyses: list[ImageAnalysis]) -> list[RuleOutcome]:
    """Apply every rule to every image, in that order."""
    outcomes: list[RuleOutcome] = []
    for analysis in analyses:
        for rule in rules:
            kind, measure = METRICS[rule.metric]
            # Byte counts stay integers, so that the JSON report prints 6127034, not 6127034.0.
            value = int(measure(analysis)) if kind == _BYTES else float(measure(analysis))
            limit = rule.limit_for(analysis)
            failed = _OPERATORS[rule.op](value, limit)
            outcomes.append(RuleOutcome(rule, analysis.source, value, limit, failed))
    return outcomes


def check(outcomes: list[RuleOutcome]) -> None:
    """Raise PolicyFailedError naming every failed rule and image, if any failed."""
    failed = [outcome for outcome in outcomes if outcome.failed]
    if not failed:
        return
    listed = "; ".join(f"{outcome.rule.text!r} for {outcome.source}" for outcome in failed)
    raise PolicyFailedError(f"{len(failed)} rule(s) failed: {listed}")
