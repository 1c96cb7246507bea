"""ShareGPT rows (axolotl's and LLaMA-Factory's `conversations` format) -> medchat's role/content messages.

    {"conversations": [{"from": "system", "value": "..."}, {"from": "human", "value": "..."},
                       {"from": "gpt", "value": "..."}, ...]}

Roles: human/user -> user, gpt/assistant/chatgpt -> assistant, system -> system. Tool or function turns
(`observation`, `function_call`) have no place in a doctor-patient conversation and fail with the row named.
"""

from __future__ import annotations

from medchat.data.errors import DataError

ROLE_MAP = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "chatgpt": "assistant",
            "system": "system"}


def to_messages(raw, where: str, column: str) -> list[dict]:
    if not isinstance(raw, list) or not all(isinstance(m, dict) for m in raw):
        raise DataError(f"{where}: column {column!r} must be a list of {{from, value}} (ShareGPT)")
    out = []
    for k, m in enumerate(raw):
        if "from" not in m or "value" not in m:
            raise DataError(f"{where}: turn {k} of {column!r} has keys {sorted(m)}; ShareGPT turns need "
                            "'from' and 'value' (for role/content rows use dataset.schema=messages)")
        role = ROLE_MAP.get(str(m["from"]).lower())
        if role is None:
            raise DataError(f"{where}: turn {k} has from={m['from']!r}; expected one of {', '.join(ROLE_MAP)}")
        out.append({"role": role, "content": m["value"]})
    return out
