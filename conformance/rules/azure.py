"""Azure AI Model Inference rules: SSE framing as azure-ai-inference parses it, the extra-parameters
header's three values, and a refused unknown api-version (D40, D41; judged on the Azure routes only).
"""

from __future__ import annotations

from collections.abc import Mapping

from conformance.exchange import Exchange
from conformance.rules.common import stream_chunks
from conformance.rules.registry import CheckFailure, JudgeContext, NotApplicable, exchange_rule, probe_rule
from spec.models import AZURE_ROUTE_KINDS

__all__ = ["sdk_framing_problems"]


def sdk_framing_problems(exchange: Exchange) -> list[str]:
    """What in a stream's framing azure-ai-inference refuses or loses (legal SSE, all of it).

    The SDK splits the body at `\\n` only, skips a line that is exactly `\\n`, ends at a line starting
    `data: [DONE]`, and parses every other line as `data: ` + one JSON object; anything else raises.
    """
    framing = exchange.framing
    if framing is None:
        return []
    problems = []
    if framing.line_endings - {"\n"}:
        problems.append(f"line endings {sorted(framing.line_endings - {chr(10)})!r} (the SDK splits at \\n only)")
    counts = {
        "comment lines (e.g. ': ping')": framing.comment_lines,
        "event: fields": framing.event_fields,
        "id:/retry: fields": framing.id_or_retry_fields,
        "data: without the space": framing.data_without_space,
        "events with several data lines": framing.multiline_data,
    }
    problems += [f"{count} {what}" for what, count in counts.items() if count]
    if framing.stray_lines:
        problems.append(f"lines that are not SSE fields: {framing.stray_lines[:2]!r}")
    if framing.unterminated_event:
        problems.append("a last event without its line end (the SDK never parses it)")
    return problems


@exchange_rule(
    "azure.sse_framing",
    "an Azure-route stream is framed as azure-ai-inference parses it: `data: {json}` lines ended by \\n only",
    ["#/paths/~1chat~1completions/post", "D40"],
)
def _sdk_framing(exchange: Exchange, context: JudgeContext) -> None:
    if exchange.request.path.partition("?")[0] not in AZURE_ROUTE_KINDS:
        raise NotApplicable
    stream_chunks(exchange)
    problems = sdk_framing_problems(exchange)
    if problems:
        raise CheckFailure("azure-ai-inference cannot read this stream: " + "; ".join(problems))


def _choices(exchange: Exchange) -> int | None:
    body = exchange.json
    if exchange.status != 200 or not isinstance(body, dict) or not isinstance(body.get("choices"), list):
        return None
    return len(body["choices"])


@probe_rule(
    "azure.extra_parameters",
    "on the Azure routes a Llama extra (n) is refused without extra-parameters or with `error`, dropped "
    "with `drop`, served with `pass-through`; any other header value is a 400",
    ["#/components/parameters/ExtraParameters", "D40"],
    probe="extra_parameters",
)
def _extra_parameters(parts: Mapping[str, Exchange], context: JudgeContext) -> None:
    if not parts:
        raise NotApplicable
    for role in ("absent", "error", "bogus"):
        exchange = parts.get(role)
        if exchange is not None and exchange.status != 400:
            raise CheckFailure(f"header {role}: expected 400, got {exchange.status}: {exchange.excerpt(200)}")
    absent = parts.get("absent")
    if absent is not None and "'n'" not in absent.body_text:
        raise CheckFailure(f"the refusal does not name the extra 'n': {absent.excerpt(200)}")
    served = {"drop": 1, "pass_through": 2}
    for role, wanted in served.items():
        exchange = parts.get(role)
        if exchange is not None and _choices(exchange) != wanted:
            raise CheckFailure(
                f"header {role.replace('_', '-')} with n=2: expected {wanted} choice(s), got status "
                f"{exchange.status}: {exchange.excerpt(200)}"
            )


@probe_rule(
    "azure.api_version",
    "an api-version the Azure AI Model Inference API does not define is refused with 400",
    ["#/components/parameters/ApiVersion", "D41"],
    probe="api_version",
)
def _api_version(parts: Mapping[str, Exchange], context: JudgeContext) -> None:
    if not parts:
        raise NotApplicable
    for role, exchange in sorted(parts.items()):
        if exchange.status != 400:
            raise CheckFailure(f"{role}: api-version 1999-01-01 got {exchange.status}: {exchange.excerpt(200)}")
