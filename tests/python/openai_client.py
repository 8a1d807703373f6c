#!/usr/bin/env python3
"""Exercise Enclave's OpenAI-compatible API with the official `openai` client.

Environment:
  ENCLAVE_URL                  e.g. http://127.0.0.1:8080 (the client uses ENCLAVE_URL + "/v1")
  ENCLAVE_API_KEY              a valid API key
  ENCLAVE_COLLECTION           a collection name holding the test documents
  ENCLAVE_QUESTION             a question answerable from that collection
  ENCLAVE_OFF_CORPUS_QUESTION  a question the documents cannot answer
  ENCLAVE_FOLLOW_UPS           two follow-ups to ENCLAVE_QUESTION that do not stand alone,
                               separated by "|" (a three-turn conversation)

Every check is printed as a step. Exit status 0 when all pass, 1 when any
fails (each failure says what was expected and what came back), 2 when the
environment is incomplete.
"""

from __future__ import annotations

import json
import os
import re
import sys
import traceback
from typing import Any, Callable

import openai
from openai import OpenAI

REFUSAL_TEXT = "The documents do not contain an answer to this question."
MARKER_RE = re.compile(r"\[(\d+)\]")
TIMEOUT_S = 300.0

CITATION_FIELDS: dict[str, type | tuple[type, ...]] = {
    "number": int,
    "document_id": str,
    "title": str,
    "page_start": int,
    "page_end": int,
    "char_start": int,
    "char_end": int,
    "quote": str,
    "url": str,
}


class CheckFailed(Exception):
    pass


def expect(cond: bool, what: str, expected: Any, got: Any) -> None:
    if not cond:
        raise CheckFailed(f"{what}: expected {expected!r}, got {got!r}")


def env(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        print(f"missing environment variable {name}", file=sys.stderr)
        sys.exit(2)
    return value


def extension(obj: Any) -> Any:
    """Return the non-standard top-level `enclave` field of a response or chunk.

    The openai client's models are pydantic v2 models with extra="allow", so
    unknown top-level JSON keys are kept, unvalidated (plain dicts/lists), in
    `model_extra`. `to_dict()` is the fallback (it includes extras too).
    Returns None when the field is absent or null.
    """
    extra = getattr(obj, "model_extra", None) or {}
    if "enclave" in extra:
        return extra["enclave"]
    return obj.to_dict().get("enclave")


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_citations(citations: Any, where: str) -> None:
    expect(isinstance(citations, list), f"{where}: enclave.citations type", "list", type(citations).__name__)
    for i, c in enumerate(citations):
        expect(isinstance(c, dict), f"{where}: citation[{i}] type", "object", c)
        for field, typ in CITATION_FIELDS.items():
            expect(field in c, f"{where}: citation[{i}] has field {field!r}", "present", sorted(c))
            v = c[field]
            ok = is_int(v) if typ is int else isinstance(v, typ)
            expect(ok, f"{where}: citation[{i}].{field} type", typ.__name__, v)


def check_markers(content: str, citations: list[dict], where: str) -> None:
    numbers = {c["number"] for c in citations}
    markers = [int(m) for m in MARKER_RE.findall(content)]
    dangling = sorted({m for m in markers if m not in numbers})
    expect(
        not dangling,
        f"{where}: every [n] marker in the content refers to a citation number",
        f"markers within {sorted(numbers)}",
        f"markers {markers}, dangling {dangling}",
    )


def check_error_body(err: openai.APIStatusError, statuses: tuple[int, ...]) -> None:
    text = err.response.text
    print(f"    HTTP {err.response.status_code} body: {text}")
    expect(err.status_code in statuses, "HTTP status", " or ".join(map(str, statuses)), err.status_code)
    try:
        body = json.loads(text)
    except ValueError:
        raise CheckFailed(f"error body: expected JSON, got {text!r}") from None
    expect(isinstance(body, dict) and isinstance(body.get("error"), dict),
           "error body shape", '{"error": {...}}', body)
    for field in ("message", "type", "code"):
        v = body["error"].get(field)
        expect(isinstance(v, str) and v != "", f"error.{field}", "a non-empty string", v)


def expect_error(call: Callable[[], Any], classes: tuple[type, ...], status: tuple[int, ...], what: str) -> None:
    names = " or ".join(c.__name__ for c in classes)
    try:
        result = call()
    except classes as e:  # type: ignore[misc]
        print(f"    raised {type(e).__name__} as expected")
        check_error_body(e, status)
        return
    except openai.APIStatusError as e:
        print(f"    HTTP {e.status_code} body: {e.response.text}")
        raise CheckFailed(f"{what}: expected {names}, got {type(e).__name__} (HTTP {e.status_code})") from None
    except openai.APIError as e:
        raise CheckFailed(f"{what}: expected {names}, got {type(e).__name__}: {e}") from None
    raise CheckFailed(f"{what}: expected {names}, got a successful response: {result!r}")


def main() -> int:
    base = env("ENCLAVE_URL").rstrip("/")
    api_key = env("ENCLAVE_API_KEY")
    collection = env("ENCLAVE_COLLECTION")
    question = env("ENCLAVE_QUESTION")
    off_corpus = env("ENCLAVE_OFF_CORPUS_QUESTION")
    follow_ups = env("ENCLAVE_FOLLOW_UPS").split("|")
    model = "enclave/" + collection

    print(f"openai {openai.__version__}, base_url {base}/v1, model {model}")
    client = OpenAI(base_url=base + "/v1", api_key=api_key, timeout=TIMEOUT_S, max_retries=0)

    def step_models() -> None:
        page = client.models.list()
        models = list(page.data)
        ids = [m.id for m in models]
        print(f"    model ids: {ids}")
        expect("enclave" in ids, "model ids include 'enclave'", "present", ids)
        expect(model in ids, f"model ids include {model!r}", "present", ids)
        for m in models:
            expect(m.owned_by == "enclave", f"model {m.id!r} owned_by", "enclave", m.owned_by)

    def step_chat() -> None:
        resp = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": question}]
        )
        expect(resp.object == "chat.completion", "object", "chat.completion", resp.object)
        expect(len(resp.choices) >= 1, "number of choices", ">= 1", len(resp.choices))
        choice = resp.choices[0]
        content = choice.message.content
        print(f"    answer: {content!r}")
        expect(choice.message.role == "assistant", "choices[0].message.role", "assistant", choice.message.role)
        expect(isinstance(content, str) and content.strip() != "", "choices[0].message.content", "non-empty text", content)
        expect(choice.finish_reason == "stop", "choices[0].finish_reason", "stop", choice.finish_reason)
        expect(resp.usage is not None, "usage", "present", resp.usage)
        expect(resp.usage.completion_tokens > 0, "usage.completion_tokens", "> 0", resp.usage.completion_tokens)
        ext = extension(resp)
        print(f"    enclave: {json.dumps(ext)}")
        expect(isinstance(ext, dict), "top-level 'enclave' extension", "an object", ext)
        expect(ext.get("refused") is False, "enclave.refused", False, ext.get("refused"))
        citations = ext.get("citations")
        check_citations(citations, "non-streaming")
        expect(len(citations) >= 1, "number of citations", ">= 1", len(citations))
        check_markers(content, citations, "non-streaming")

    def step_stream() -> None:
        stream = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": question}], stream=True
        )
        chunks = list(stream)
        print(f"    received {len(chunks)} chunks")
        expect(len(chunks) >= 1, "number of chunks", ">= 1", 0)
        for i, ch in enumerate(chunks):
            expect(ch.object == "chat.completion.chunk", f"chunk[{i}].object", "chat.completion.chunk", ch.object)
        ids = {ch.id for ch in chunks}
        expect(len(ids) == 1, "all chunks share one id", "a single id", sorted(ids))

        with_choices = [(i, ch) for i, ch in enumerate(chunks) if ch.choices]
        expect(len(with_choices) >= 1, "chunks with choices", ">= 1", 0)
        first = with_choices[0][1]
        expect(first.choices[0].delta.role == "assistant", "first chunk delta.role", "assistant", first.choices[0].delta.role)

        pieces = [ch.choices[0].delta.content for _, ch in with_choices if ch.choices[0].delta.content]
        expect(len(pieces) >= 2, "chunks with non-empty delta.content", ">= 2", len(pieces))
        content = "".join(pieces)
        print(f"    answer: {content!r}")
        expect(content.strip() != "", "concatenated content", "non-empty text", content)

        last_idx, last = with_choices[-1]
        finishing = [i for i, ch in with_choices if ch.choices[0].finish_reason is not None]
        expect(finishing == [last_idx], "indices of chunks carrying finish_reason",
               [last_idx], finishing)
        expect(last.choices[0].finish_reason == "stop", "last chunk finish_reason", "stop", last.choices[0].finish_reason)

        carrying = [i for i, ch in enumerate(chunks) if extension(ch) is not None]
        expect(carrying == [last_idx], "indices of chunks carrying the 'enclave' extension",
               [last_idx], carrying)
        ext = extension(last)
        print(f"    enclave: {json.dumps(ext)}")
        expect(isinstance(ext, dict), "last chunk 'enclave' extension", "an object", ext)
        check_citations(ext.get("citations"), "streaming")
        check_markers(content, ext["citations"], "streaming")

    def step_conversation() -> None:
        # Three turns, the client keeping the conversation: each follow-up is made standalone
        # with the turns before it, and answered with citations.
        messages = [{"role": "system", "content": "Answer from the documents."},
                    {"role": "user", "content": question}]
        resp = client.chat.completions.create(model=model, messages=messages)
        ext = extension(resp)
        expect(ext.get("standalone_question") is None, "turn 1 enclave.standalone_question",
               None, ext.get("standalone_question"))
        for turn, follow_up in enumerate(follow_ups, start=2):
            messages += [{"role": "assistant", "content": resp.choices[0].message.content},
                         {"role": "user", "content": follow_up}]
            resp = client.chat.completions.create(model=model, messages=messages)
            ext = extension(resp)
            content = resp.choices[0].message.content
            standalone = ext.get("standalone_question")
            print(f"    turn {turn}: {follow_up!r} searched as {standalone!r}")
            print(f"    answer: {content!r}")
            expect(isinstance(standalone, str) and standalone.strip() != "" and standalone != follow_up,
                   f"turn {turn} enclave.standalone_question", "a rewritten question", standalone)
            check_citations(ext.get("citations"), f"turn {turn}")
            if not ext.get("refused"):
                check_markers(content, ext["citations"], f"turn {turn}")

    def step_refusal() -> None:
        resp = client.chat.completions.create(
            model="enclave", messages=[{"role": "user", "content": off_corpus}]
        )
        content = resp.choices[0].message.content if resp.choices else None
        print(f"    answer: {content!r}")
        ext = extension(resp)
        print(f"    enclave: {json.dumps(ext)}")
        expect(isinstance(ext, dict), "top-level 'enclave' extension", "an object", ext)
        expect(ext.get("refused") is True, "enclave.refused", True, ext.get("refused"))
        expect(ext.get("citations") == [], "enclave.citations", [], ext.get("citations"))
        expect(content == REFUSAL_TEXT, "content", REFUSAL_TEXT, content)

    def step_errors() -> None:
        bad = OpenAI(base_url=base + "/v1", api_key="wrong-" + api_key, timeout=TIMEOUT_S, max_retries=0)
        print("    wrong API key:")
        expect_error(
            lambda: bad.chat.completions.create(model=model, messages=[{"role": "user", "content": question}]),
            (openai.AuthenticationError,), (401,), "wrong API key",
        )
        print("    unknown model enclave/no-such-collection:")
        expect_error(
            lambda: client.chat.completions.create(
                model="enclave/no-such-collection", messages=[{"role": "user", "content": question}]
            ),
            (openai.NotFoundError,), (404,), "unknown model",
        )
        print("    no user message:")
        expect_error(
            lambda: client.chat.completions.create(
                model=model, messages=[{"role": "system", "content": "You are a helpful assistant."}]
            ),
            (openai.BadRequestError, openai.UnprocessableEntityError), (400, 422), "no user message",
        )

    steps: list[tuple[str, Callable[[], None]]] = [
        ("a. models.list", step_models),
        ("b. chat completion (non-streaming)", step_chat),
        ("c. chat completion (streaming)", step_stream),
        ("d. off-corpus question is refused", step_refusal),
        ("d2. a three-turn conversation", step_conversation),
        ("e. error responses", step_errors),
    ]
    failures = []
    for name, fn in steps:
        print(f"STEP {name}")
        try:
            fn()
        except CheckFailed as e:
            print(f"FAIL {name}: {e}")
            failures.append(name)
        except openai.APIStatusError as e:
            print(f"FAIL {name}: unexpected HTTP {e.status_code} ({type(e).__name__}): {e.response.text}")
            failures.append(name)
        except Exception as e:  # noqa: BLE001 - report anything else as a failure of this step
            print(f"FAIL {name}: unexpected {type(e).__name__}: {e}")
            traceback.print_exc()
            failures.append(name)
        else:
            print(f"ok   {name}")

    if failures:
        print(f"{len(failures)} of {len(steps)} steps failed: {', '.join(failures)}")
        return 1
    print(f"all {len(steps)} steps passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
