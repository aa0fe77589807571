"""The Zoho sandbox's record store: ids, records and their indexes, deleted entries, and record validation."""

from __future__ import annotations

import copy
import email.utils
import functools
import math
import re
import time
from datetime import date, datetime, timezone
from typing import Any

from sandboxes.zoho import metadata
from sandboxes.zoho.faults import _err

_TEXTUAL = frozenset({"text", "textarea", "email", "phone", "website", "picklist"})
_EXPECTED_TYPE = {"currency": "double", "lookup": "jsonobject", "ownerlookup": "jsonobject",
                  "multiselectpicklist": "jsonarray"}
_EMAIL_RE = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")


def _iso(ts: float) -> str:
    return _iso_second(int(ts))


@functools.lru_cache(maxsize=64)
def _iso_second(second: int) -> str:
    """Formatted once per second: every record written stamps its Created_Time and Modified_Time."""
    return datetime.fromtimestamp(second, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def _parse_time(value: str) -> float | None:
    """ISO 8601 (Zoho's format) or an RFC 1123 HTTP date; None when unparsable."""
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        try:
            parsed = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def _norm(value: Any) -> str:
    """Duplicate matching key: Zoho compares unique values case-insensitively (and we trim)."""
    return str(value).strip().lower()


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _set_full_name(rec: dict) -> None:
    rec["Full_Name"] = " ".join(p for p in (rec.get("First_Name"), rec.get("Last_Name")) if p) or None


def _check_value(spec: dict, value: Any, path: str) -> tuple[Any, dict | None]:
    """Validate one value against its field; returns (value to store, error item or None)."""
    name, data_type, length = spec["api_name"], spec["data_type"], spec["length"]
    if value is None:
        return None, None

    # The error items are built only for a value that fails (most values pass: 1,500 checks per 100 records).
    def type_error() -> dict:
        return _err("INVALID_DATA", "invalid data", expected_data_type=_EXPECTED_TYPE.get(data_type, data_type),
                    api_name=name, json_path=path)

    def too_long() -> dict:
        return _err("INVALID_DATA", "invalid data", maximum_length=length, api_name=name, json_path=path)

    def bad_value() -> dict:
        return _err("INVALID_DATA", "invalid data", api_name=name, json_path=path)

    if data_type in _TEXTUAL:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            return None, type_error()
        text = value if isinstance(value, str) else str(value)  # Zoho stores numbers sent to text fields as text
        if len(text) > length:
            return None, too_long()
        if data_type == "email" and text.strip() and not _EMAIL_RE.match(text.strip()):
            return None, bad_value()
        if data_type == "website" and any(c.isspace() for c in text.strip()):  # loose: localhost URLs pass
            return None, bad_value()
        return text, None
    if data_type == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            return None, type_error()
        return (value, None) if len(str(abs(value))) <= length else (None, too_long())
    if data_type in ("currency", "double"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return None, type_error()
        return (value, None) if len(str(int(abs(value)))) <= length else (None, too_long())
    if data_type == "boolean":
        return (value, None) if isinstance(value, bool) else (None, type_error())
    if data_type == "date":
        try:
            date.fromisoformat(value)
        except (TypeError, ValueError):
            return None, type_error()
        return value, None
    if data_type == "datetime":
        ok = isinstance(value, str) and _parse_time(value) is not None
        return (value, None) if ok else (None, type_error())
    if data_type in ("lookup", "ownerlookup"):
        ok = isinstance(value, dict) and (value.get("id") or value.get("name"))
        return (dict(value), None) if ok else (None, type_error())
    if data_type == "multiselectpicklist":
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        return (list(value), None) if ok else (None, type_error())
    return value, None


class RecordStore:
    """ZohoSandbox's records: created, changed and removed under ``_lock``, indexed on demand for matching."""

    _PASS_THROUGH_KEYS = frozenset({"id", "Layout", "Tag", "trigger"})

    def records(self, module: str) -> list[dict]:
        with self._lock:
            return [copy.deepcopy(rec) for rec in self._store[module].values()]

    def deleted_records(self, module: str) -> list[dict]:
        with self._lock:
            return [copy.deepcopy(entry) for entry in self._deleted[module]]

    def delete_record_in_ui(self, module: str, record_id: str, permanent: bool = False) -> None:
        """A user deletes a record inside Zoho: it leaves the module and shows in the deleted list."""
        with self._lock:
            if record_id not in self._store[module]:
                raise KeyError(f"{module} has no record {record_id}")
            self._remove(module, record_id, "permanent" if permanent else "recycle")

    def _new_id(self) -> str:
        with self._lock:
            self._next_id += 1
            return str(self._next_id)

    def _unique_fields(self, module: str) -> list[str]:
        return list(self._unique[module])

    def _matches(self, module: str, field_name: str, value: Any) -> list[str]:
        """Ids whose ``field_name`` equals ``value`` (normalised), oldest first; converted leads excluded."""
        if _blank(value):
            return []
        key = (module, field_name)
        if key not in self._indexes:
            index: dict[str, list[str]] = {}
            for rid, rec in self._store[module].items():
                if not _blank(rec.get(field_name)):
                    index.setdefault(_norm(rec[field_name]), []).append(rid)
            self._indexes[key] = index
        ids = self._indexes[key].get(_norm(value), [])
        return [rid for rid in ids if not self._store[module][rid].get("Converted__s")]

    def _reindex(self, module: str, old: dict | None, new: dict | None) -> None:
        for (mod, field_name), index in self._indexes.items():
            if mod != module:
                continue
            if old is not None and not _blank(old.get(field_name)):
                bucket = index.get(_norm(old[field_name]), [])
                if old["id"] in bucket:
                    bucket.remove(old["id"])
            if new is not None and not _blank(new.get(field_name)):
                bucket = index.setdefault(_norm(new[field_name]), [])
                bucket.append(new["id"])
                bucket.sort()  # ids grow with creation time, so this keeps oldest first

    def _create(self, module: str, values: dict) -> dict:
        now = time.time()
        stamp = _iso(now)
        rec = {"id": self._new_id(), "Owner": dict(self._user)}
        rec.update({k: v for k, v in values.items() if v is not None})
        rec.update({"Created_Time": stamp, "Modified_Time": stamp, "Created_By": dict(self._user),
                    "Modified_By": dict(self._user)})
        if module == "Leads":
            rec.setdefault("Converted__s", False)
        _set_full_name(rec)
        self._store[module][rec["id"]] = rec
        self._mtimes[rec["id"]] = now
        self._reindex(module, None, rec)
        return rec

    def _apply(self, module: str, record_id: str, values: dict) -> dict:
        old = self._store[module][record_id]
        new = dict(old)
        for key, value in values.items():
            if value is None:
                new.pop(key, None)
            else:
                new[key] = value
        now = time.time()
        new.update({"Modified_Time": _iso(now), "Modified_By": dict(self._user)})
        _set_full_name(new)
        self._store[module][record_id] = new
        self._mtimes[record_id] = now
        self._reindex(module, old, new)
        return new

    def _remove(self, module: str, record_id: str, kind: str) -> None:
        rec = self._store[module].pop(record_id)
        self._reindex(module, rec, None)
        permanent = kind == "permanent"  # permanently deleted entries carry no user or name (doc §5)
        now = time.time()
        self._deleted[module].append({
            "deleted_by": None if permanent else {"name": self._user["name"], "id": self._user["id"]},
            "id": record_id, "display_name": None if permanent else rec.get("Full_Name"), "type": kind,
            "created_by": None if permanent else {"name": self._user["name"], "id": self._user["id"]},
            "deleted_time": _iso(now), "_ts": now})

    def _success_details(self, rec: dict) -> dict:
        return {"Modified_Time": rec["Modified_Time"], "Modified_By": rec["Modified_By"],
                "Created_Time": rec["Created_Time"], "id": rec["id"], "Created_By": rec["Created_By"],
                "$approval_state": "approved"}

    def _validate_record(self, module: str, rec: Any, index: int, *, creating: bool) -> tuple[dict, list[dict]]:
        """Check one input record; returns the values to store and every error found (API reports the first)."""
        if not isinstance(rec, dict):
            return {}, [_err("INVALID_DATA", "invalid data", expected_data_type="jsonobject",
                             api_name="data", json_path=f"$.data[{index}]")]
        specs = self._fields[module]
        values: dict[str, Any] = {}
        errors: list[dict] = []
        for key, raw in rec.items():
            if key in self._PASS_THROUGH_KEYS or key.startswith("$"):
                continue
            path = f"$.data[{index}].{key}"
            spec = specs.get(key)
            if spec is None:
                errors.append(_err("INVALID_DATA", "the field api name given seems to be invalid",
                                   api_name=key, json_path=path))
            elif spec["read_only"]:
                errors.append(_err("INVALID_DATA", "invalid data", api_name=key, json_path=path,
                                   reason="field is read only"))
            else:
                value, error = _check_value(spec, raw, path)
                if error is not None:
                    errors.append(error)
                else:
                    values[key] = None if isinstance(value, str) and not value.strip() else value
        for name in metadata.required_fields(self, module):  # system-mandatory, then the layout's required fields
            missing = _blank(values.get(name)) if creating else (name in values and _blank(values[name]))
            if missing and not any(e["details"].get("api_name") == name for e in errors):
                errors.append(_err("MANDATORY_NOT_FOUND", "required field not found", api_name=name,
                                   json_path=f"$.data[{index}].{name}"))
        return values, errors

    def _unique_errors(self, module: str, values: dict, index: int, own_id: str | None) -> list[dict]:
        """DUPLICATE_DATA when a value of a unique field (extra_fields ``unique``) is already taken."""
        for name in self._unique_fields(module):
            others = [rid for rid in self._matches(module, name, values.get(name)) if rid != own_id]
            if others:
                return [_err("DUPLICATE_DATA", "duplicate data", api_name=name, json_path=f"$.data[{index}].{name}",
                             duplicate_record={"id": others[0], "module": {"api_name": module},
                                               "Owner": {"name": self._user["name"], "id": self._user["id"]}},
                             more_records=len(others) > 1)]
        return []

    def _stale(self, record_id: str, since: float | None, index: int) -> dict | None:
        """ALREADY_MODIFIED when If-Unmodified-Since is older than the record's last change."""
        if since is None or int(self._mtimes.get(record_id, 0)) <= int(since):
            return None
        return _err("ALREADY_MODIFIED", "record updated time has already passed if-unmodified-since time",
                    id=record_id, json_path=f"$.data[{index}]")
