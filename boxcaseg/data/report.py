"""Validation findings: every problem names the file and the item, and says what was done."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

MAX_LISTED = 25  # problems spelled out in an error message; the rest are counted


class DataError(ValueError):
    """Input data that cannot be used as it is. The message names the files and items."""


@dataclass(frozen=True)
class Issue:
    file: str
    item: str
    problem: str
    action: str = ""  # e.g. "dropped", "clipped", "binarised"; empty for errors

    def __str__(self) -> str:
        where = f"{self.file}" + (f" [{self.item}]" if self.item else "")
        tail = f" -> {self.action}" if self.action else ""
        return f"{where}: {self.problem}{tail}"


@dataclass
class ValidationReport:
    """What an importer or validator found. Warnings become errors under ``strict``."""

    source: str
    strict: bool = False
    errors: list[Issue] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)
    counts: dict[str, Any] = field(default_factory=dict)

    def error(self, file: str, item: str, problem: str) -> None:
        self.errors.append(Issue(str(file), item, problem))

    def warn(self, file: str, item: str, problem: str, action: str) -> None:
        issue = Issue(str(file), item, problem, action)
        (self.errors if self.strict else self.warnings).append(issue)

    def raise_if_errors(self) -> None:
        if not self.errors:
            return
        lines = [str(issue) for issue in self.errors[:MAX_LISTED]]
        more = len(self.errors) - MAX_LISTED
        if more > 0:
            lines.append(f"... and {more} more")
        mode = " (--strict: warnings count as errors)" if self.strict else ""
        raise DataError(
            f"{self.source}: {len(self.errors)} problem(s) in the input{mode}:\n  - "
            + "\n  - ".join(lines)
        )

    def to_dict(self) -> dict[str, Any]:
        by_action = Counter(issue.action for issue in self.warnings)
        return {
            "source": self.source,
            "strict": self.strict,
            "counts": self.counts,
            "warnings_by_action": dict(by_action),
            "warnings": [issue.__dict__ for issue in self.warnings],
            "errors": [issue.__dict__ for issue in self.errors],
        }

    def summary(self) -> str:
        parts = [f"{k}={v}" for k, v in self.counts.items() if not isinstance(v, dict)]
        line = f"{self.source}: " + ", ".join(parts)
        if self.warnings:
            by_action = Counter(issue.action for issue in self.warnings)
            line += "; warnings: " + ", ".join(f"{n} {a}" for a, n in sorted(by_action.items()))
        return line
