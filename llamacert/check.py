"""`llamacert check FILE`: judge saved exchanges (a report directory's exchanges.jsonl) again, offline.

The same rule functions as a live run; no endpoint is contacted. Exit status: 0 no required-severity
rule failed, 1 one did, 3 the file could not be read or the arguments are wrong.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any, NoReturn

from conformance.exchange import ExchangeFileError, load_exchanges
from conformance.rules import RULES, JudgeContext, RuleOutcome, judge
from spec.document import Strictness
from spec.profiles import get_profile

__all__ = ["check_main"]

EXIT_COULD_NOT_RUN = 3


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_COULD_NOT_RUN, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="llamacert check", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("exchanges", type=Path, help="a JSONL file of saved exchanges (exchanges.jsonl)")
    parser.add_argument("--strictness", choices=[s.value for s in Strictness], default="docs")
    parser.add_argument("--profile", help="judge only the rules this profile requires (spec/profiles.yaml)")
    parser.add_argument("--json", type=Path, help="also write the per-rule outcomes to this file")
    return parser


def check_main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        profile = get_profile(args.profile) if args.profile else None
        exchanges = load_exchanges(args.exchanges)
    except (ValueError, ExchangeFileError) as exc:
        print(f"llamacert check: {exc}", file=sys.stderr)
        return EXIT_COULD_NOT_RUN
    context = JudgeContext(Strictness(args.strictness), profile)
    by_rule: dict[str, list[RuleOutcome]] = defaultdict(list)
    for outcome in judge(exchanges, context):
        by_rule[outcome.rule_id].append(outcome)
    rows: list[dict[str, Any]] = []
    for rule_id, rule in sorted(RULES.items()):
        if not rule.applies(context):
            continue
        outcomes = by_rule.get(rule_id, [])
        failed = [o for o in outcomes if not o.passed]
        verdict = "fail" if failed else "pass" if outcomes else "not-run"
        rows.append(
            {
                "rule_id": rule_id,
                "severity": rule.severity,
                "outcome": verdict,
                "judged": len(outcomes),
                "failed": len(failed),
                "message": failed[0].message if failed else None,
            }
        )
    print(f"{len(exchanges)} exchanges from {args.exchanges}, judged under {context.strictness.value}")
    width = max(len(row["rule_id"]) for row in rows)
    for row in rows:
        line = f"  {row['rule_id']:<{width}}  {row['outcome']:<7}  {row['judged']:>4} judged"
        if row["severity"] == "advisory":
            line += "  (advisory)"
        print(line + (f"  {str(row['message'])[:160]}" if row["message"] else ""))
    counts = {name: sum(row["outcome"] == name for row in rows) for name in ("pass", "fail", "not-run")}
    print(f"{counts['pass']} passed, {counts['fail']} failed, {counts['not-run']} not exercised by these exchanges")
    if args.json:
        args.json.write_text(json.dumps({"rules": rows}, indent=2), encoding="utf-8")
    required_failed = any(row["outcome"] == "fail" and row["severity"] == "required" for row in rows)
    return 1 if required_failed else 0
