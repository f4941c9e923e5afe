"""The prompt texts of the LSP game (our own wording of the intent in docs/algorithms.md §1)."""

from __future__ import annotations

import re

QUERY_START = "<input>"
QUERY_END = "</input>"

CHALLENGER_PROMPT = """You write test inputs for an AI assistant. A task is a set of (input, output) pairs; your job is to write ONE new input for the task '{task}'.
The input can be easy, intermediate, hard or deliberately noisy: choose whatever stress-tests the assistant best.
Fill in the template below. Write the filled-in template between {start} and {end}, and nothing else: no output, no hints, no extra information. Stop as soon as the template is filled.

Template:
{template}"""


def challenger_messages(task: str, template: str) -> list[dict[str, str]]:
    text = CHALLENGER_PROMPT.format(task=task, template=template, start=QUERY_START, end=QUERY_END)
    return [{"role": "user", "content": text}]


def parse_query(completion: str, prefix: str = "") -> tuple[str, bool]:
    """The Challenger's query from its completion; returns (query, followed_the_format).

    The generation prompt already ends with the start marker (and ``game.query_prefix``), so
    the completion normally holds the query (its rest) followed by the end marker. A missing
    end marker is tolerated (the text is used as it is); a stray start marker is stripped. A
    completion that adds nothing to the prefix is an empty query.
    """
    body, well_formed = _between_markers(completion)
    if body and prefix:
        body = _between_markers(prefix + completion)[0]
    return body, well_formed


def _between_markers(completion: str) -> tuple[str, bool]:
    text = completion
    well_formed = QUERY_END in text
    if QUERY_START in text:
        text = text.split(QUERY_START, 1)[1]
    text = text.split(QUERY_END, 1)[0]
    text = re.sub(r"\s+\n", "\n", text).strip()
    return text, well_formed and bool(text)


def solver_messages(query: str, system_prompt: str | None = None) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages.append({"role": "user", "content": query})
    return messages
