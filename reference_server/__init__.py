"""The reference server: the Llama API served for real on llama.cpp (CPU) or vLLM (GPU)."""

__all__: list[str] = []
