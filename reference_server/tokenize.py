"""POST /tokenize (an extension, D58): a text's token ids as the backend's tokenizer gives them, in the request
and answer shapes llama.cpp's server and vLLM's both read, so a load test can make its prompt lengths exact."""

from __future__ import annotations

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from reference_server.chat import ChatApi
from reference_server.edge import read_json_object
from reference_server.errors import from_validation_error
from reference_server.serving import app_state, authenticate
from spec.models import TokenizeRequest, TokenizeResponse

__all__ = ["tokenize_route"]

_CHAT = ChatApi()


async def tokenize_route(request: Request) -> Response:
    state = app_state(request)
    authenticate(request, state.api_key)
    data = await read_json_object(request, state.body_limits)
    try:
        asked = TokenizeRequest.model_validate(data)
        chat = None if asked.messages is None else _CHAT.parse({"messages": data["messages"]})
    except ValidationError as error:
        raise from_validation_error(error) from None
    backend = state.backend
    if chat is not None:
        # the chat route's own prompt: the history through the model's chat template
        (text,), _ = await _CHAT.prompts(chat, backend)
    else:
        text = asked.content if asked.content is not None else asked.prompt or ""
    tokens = await backend.tokenize(text) if text else []
    if not asked.with_special_tokens:
        # what the tokenizer adds to every prompt is what it gives for the empty one (the start token, if any)
        start = await backend.tokenize("")
        if start and tokens[: len(start)] == start:
            tokens = tokens[len(start) :]
    answer = TokenizeResponse(tokens=tokens, count=len(tokens), max_model_len=backend.info.context_length)
    return JSONResponse(answer.model_dump(mode="json"))
