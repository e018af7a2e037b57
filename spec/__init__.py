"""The Llama API spec: `openapi.yaml` (the oracle), its decisions, profiles and wire models."""

__all__: list[str] = []
