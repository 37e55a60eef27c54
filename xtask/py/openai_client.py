"""The official `openai` Python client drives a running `calybris serve --demo`.

Run by `cargo xtask openai` (a step of `cargo xtask ci`), which starts the gateway on a
free loopback port and passes its base URL and the demo key:

    python3 xtask/py/openai_client.py http://127.0.0.1:PORT/v1 sk-calybris-demo

It lists the models, asks for a whole answer and for a streamed one, calls a tool
(whole and streamed, then the tool's result answered), and checks three
refusals (a bad key, an unknown model, a bad max_tokens) come back as the client's
typed errors with the right status. Every check is an assert; the last line printed is
`decision N`, the log sequence of the whole answer's decision, for `calybris replay`.
"""

import json
import sys

import openai
from openai import OpenAI

DEMO_MODELS = {
    "gpt-4o-mini-2024-07-18",
    "claude-3-5-sonnet-20240620",
    "Meta-Llama-3-8B-Instruct",
}


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"query": {"type": "string"}},
            "required": ["query"],
        },
    },
}


def tool_calls(client: OpenAI) -> None:
    """One tool call, whole and streamed (with a named tool_choice), asked of two demo
    models (the kernel may substitute the one of better utility; every demo model with
    the function_calling capability can serve), then the second turn with the tool's
    result."""
    question = {"role": "user", "content": "What is the weather in Paris?"}
    for model in ("gpt-4o-mini-2024-07-18", "claude-3-5-sonnet-20240620"):
        answer = client.chat.completions.create(
            model=model, messages=[question], tools=[WEATHER], tool_choice="auto", max_tokens=32
        )
        choice = answer.choices[0]
        assert choice.finish_reason == "tool_calls", choice
        assert choice.message.content is None, choice.message
        assert len(choice.message.tool_calls) == 1, choice.message
        call = choice.message.tool_calls[0]
        assert call.type == "function" and call.id, call
        assert call.function.name == "get_weather", call
        arguments = json.loads(call.function.arguments)
        assert arguments["query"].startswith("Hello from "), arguments
        print(f"tool call: {answer.model} called {call.function.name}({call.function.arguments})")

        stream = client.chat.completions.create(
            model=model,
            messages=[question],
            tools=[WEATHER],
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
            max_tokens=32,
            stream=True,
        )
        calls, finish = {}, None
        for chunk in stream:
            for piece in chunk.choices:
                for delta in piece.delta.tool_calls or []:
                    entry = calls.setdefault(delta.index, {"id": None, "name": None, "arguments": ""})
                    if delta.id:
                        entry["id"] = delta.id
                    if delta.function and delta.function.name:
                        entry["name"] = delta.function.name
                    if delta.function and delta.function.arguments:
                        entry["arguments"] += delta.function.arguments
                if piece.finish_reason is not None:
                    finish = piece.finish_reason
        assert finish == "tool_calls", finish
        assert list(calls) == [0], calls
        assert calls[0]["id"] and calls[0]["name"] == "get_weather", calls
        assert json.loads(calls[0]["arguments"]) == arguments, calls
        print(f"tool call streamed: {calls[0]['name']}({calls[0]['arguments']})")

        follow = client.chat.completions.create(
            model=model,
            messages=[
                question,
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": call.id,
                            "type": "function",
                            "function": {"name": call.function.name, "arguments": call.function.arguments},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": call.id, "content": "18 C, sunny"},
            ],
            tools=[WEATHER],
            max_tokens=32,
        )
        assert follow.choices[0].finish_reason == "stop", follow.choices[0]
        assert follow.choices[0].message.content.startswith("Hello from "), follow.choices[0]
        print(f"tool result answered: {follow.choices[0].message.content!r}")


def main() -> int:
    base_url, key = sys.argv[1], sys.argv[2]
    client = OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=30)

    models = client.models.list()
    ids = {model.id for model in models.data}
    assert ids == DEMO_MODELS, ids
    print(f"models: {sorted(ids)}")

    raw = client.chat.completions.with_raw_response.create(
        model="auto",
        messages=[{"role": "user", "content": "Hello from the openai client"}],
        max_tokens=32,
    )
    decision = int(raw.headers["x-calybris-decision"])
    served_by = raw.headers["x-calybris-served-by"]
    answer = raw.parse()
    assert answer.object == "chat.completion", answer
    assert answer.model in DEMO_MODELS, answer.model
    assert served_by.endswith("/" + answer.model), (served_by, answer.model)
    text = answer.choices[0].message.content
    assert text.startswith("Hello from "), text
    assert answer.choices[0].finish_reason == "stop", answer.choices[0]
    assert answer.usage.prompt_tokens > 0 and answer.usage.completion_tokens > 0, answer.usage
    assert answer.usage.total_tokens == (
        answer.usage.prompt_tokens + answer.usage.completion_tokens
    ), answer.usage
    print(f"whole: {answer.model} said {text!r} (decision {decision})")

    stream = client.chat.completions.create(
        model="gpt-4o-mini-2024-07-18",
        messages=[{"role": "user", "content": "Stream, please"}],
        max_tokens=32,
        stream=True,
    )
    pieces, usage, models_seen, finish = [], None, set(), None
    for chunk in stream:
        assert chunk.object == "chat.completion.chunk", chunk
        models_seen.add(chunk.model)
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
            if choice.finish_reason is not None:
                finish = choice.finish_reason
    streamed = "".join(pieces)
    assert streamed.startswith("Hello from "), streamed
    assert len(models_seen) == 1 and models_seen <= DEMO_MODELS, models_seen
    assert finish == "stop", finish
    assert usage is not None and usage.completion_tokens > 0, usage
    print(f"stream: {len(pieces)} pieces, {streamed!r}, usage {usage.total_tokens} tokens")

    tool_calls(client)

    bad = OpenAI(base_url=base_url, api_key="sk-not-a-key", max_retries=0, timeout=30)
    try:
        bad.chat.completions.create(
            model="auto", messages=[{"role": "user", "content": "Hi"}]
        )
        raise AssertionError("a bad key was served")
    except openai.AuthenticationError as error:
        assert error.status_code == 401, error
        print(f"bad key: 401 {error.body}")

    try:
        client.chat.completions.create(
            model="no-such-model", messages=[{"role": "user", "content": "Hi"}]
        )
        raise AssertionError("an unknown model was served")
    except openai.NotFoundError as error:
        assert error.status_code == 404, error
        print(f"unknown model: 404 {error.body}")

    try:
        client.chat.completions.create(
            model="auto", messages=[{"role": "user", "content": "Hi"}], max_tokens=0
        )
        raise AssertionError("max_tokens 0 was served")
    except openai.BadRequestError as error:
        assert error.status_code == 400, error
        print(f"bad max_tokens: 400 {error.body}")

    print(f"decision {decision}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
