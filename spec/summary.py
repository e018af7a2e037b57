"""`llamacert spec`: validate the spec document and summarise its routes, profiles and decisions."""

from __future__ import annotations

import re
from pathlib import Path

from openapi_spec_validator import validate

from spec.document import DOCUMENT_PATH, load_document
from spec.profiles import load_profiles

__all__ = ["decisions", "print_summary"]

DECISIONS_PATH = Path(__file__).with_name("DECISIONS.md")


def decisions() -> list[tuple[str, str, str]]:
    """(id, title, chosen) for each decision of DECISIONS.md."""
    found = []
    for section in re.split(r"^## ", DECISIONS_PATH.read_text(encoding="utf-8"), flags=re.MULTILINE)[1:]:
        heading, _, body = section.partition("\n")
        identifier, _, title = heading.partition(" — ")
        chosen = re.search(r"^- Chosen: (.*)$", body, flags=re.MULTILINE)
        found.append((identifier.strip(), title.strip(), chosen.group(1) if chosen else ""))
    return found


def print_summary() -> int:
    document = load_document()
    validate(document)
    print(f"{DOCUMENT_PATH}: valid OpenAPI {document['openapi']}")
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            print(f"  {method.upper():5} {path:24} {operation['summary']}")
    print("profiles:")
    for profile in load_profiles().values():
        rpm = profile.requests_per_minute or "-"
        tpm = profile.tokens_per_minute or "-"
        print(f"  {profile.name:20} RPM {rpm!s:>6}  TPM {tpm!s:>8}  content safety {profile.content_safety}")
    print(f"decisions ({DECISIONS_PATH}):")
    for identifier, title, chosen in decisions():
        short = chosen if len(chosen) <= 100 else chosen[:97] + "..."
        print(f"  {identifier:4} {title}\n       -> {short}")
    return 0
