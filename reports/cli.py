"""Command-line entry points of the reports package: `compare OLD.json NEW.json [--tolerance 10%]`."""

from __future__ import annotations

import argparse
import sys

from reports.compare import DEFAULT_TOLERANCE_PCT, compare_reports, format_comparison
from reports.model import Report, ReportInputError
from spec.load_regression import ToleranceError, parse_tolerance_pct

__all__ = ["compare_main"]

EXIT_OK = 0
EXIT_REGRESSION = 1
EXIT_BAD_INPUT = 2


def _tolerance(text: str) -> float:
    """A tolerance in percent (spec.load_regression's one meaning): `10%` or `10`."""
    try:
        return parse_tolerance_pct(text)
    except ToleranceError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _compare_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llamacert compare",
        description="Compare two llamacert report.json files. Exits 1 on a regression (a rule that newly fails, "
        "or a load metric worse by more than the tolerance), 2 when an input cannot be read, 0 otherwise.",
    )
    parser.add_argument("old", metavar="OLD.json", help="the earlier report.json (the baseline)")
    parser.add_argument("new", metavar="NEW.json", help="the later report.json")
    parser.add_argument(
        "--tolerance",
        type=_tolerance,
        default=DEFAULT_TOLERANCE_PCT,
        metavar="PCT",
        help="how much worse than OLD a metric may get, in percent of OLD, before it counts as a regression "
        f"(default: {DEFAULT_TOLERANCE_PCT:g}%%); repeated runs' spread widens it",
    )
    return parser


def compare_main(argv: list[str] | None = None) -> int:
    """Run `compare`; the exit status: 0 no regression, 1 regression, 2 unreadable input or bad arguments."""
    parser = _compare_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        # argparse has already printed the usage and the problem; --help exits 0.
        return exit_.code if isinstance(exit_.code, int) else EXIT_BAD_INPUT
    try:
        old, new = Report.load(args.old), Report.load(args.new)
    except ReportInputError as error:
        print(f"llamacert compare: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    comparison = compare_reports(old, new, args.tolerance)
    sys.stdout.write(format_comparison(comparison, old_label=args.old, new_label=args.new))
    return EXIT_REGRESSION if comparison.is_regression else EXIT_OK


if __name__ == "__main__":
    raise SystemExit(compare_main(sys.argv[1:]))
