"""What the PHP sandboxes (Magento, DecoNetwork) share on the wire: PHP query arrays and json_encode's output."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl


def parse_php_query(query: str) -> dict:
    """Decode a PHP-style query string (a[b][0][c]=v) into nested dicts, keeping insertion order like PHP arrays."""
    root: dict = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        head, _, rest = key.partition("[")
        parts = [head] + (re.findall(r"\[([^\]]*)\]", "[" + rest) if rest else [])
        node = root
        for part in parts[:-1]:
            part = part or str(len(node))  # "[]" appends, as in PHP
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[parts[-1] or str(len(node))] = value
    return root


def php_json(body: Any) -> bytes:
    """PHP's json_encode: compact, non-ASCII as \\u escapes, "/" escaped."""
    return json.dumps(body, separators=(",", ":")).replace("/", "\\/").encode("ascii")
