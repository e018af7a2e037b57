"""llamacert: certify endpoints serving Meta Llama models against the Llama API as documented."""

__all__: list[str] = []
