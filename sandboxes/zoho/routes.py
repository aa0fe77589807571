"""The Zoho sandbox's routers (API, accounts, control), OAuth scope rules and the route a call resolves to."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from sandboxes._router import Route, Router, SandboxError

MODULES = ("Contacts", "Leads")

# Endpoints register here with one decorator each: ``@api.route(method, pattern, operation=..., scope=...,
# cost=...)`` on ``fn(sandbox, request, info, **path_params) -> Response``. ``cost`` is credits (default 1)
# or a function of the request; ``scope`` a rule below (none: any token will do).
api = Router(collapse_slashes=True)  # Zoho ignores empty path segments
accounts = Router()  # /oauth/v2/...: the accounts host; ``fn(sandbox, request, info, form) -> Response``
control = Router()  # /__sandbox__/...: test knobs, no auth, not counted; ``fn(sandbox, body) -> 200 body``

ScopeRule = Callable[[set, str], bool]  # (granted scopes, lower-cased module) -> allowed


def module_name(name: str) -> str:
    """Canonical module api name (Zoho accepts any case); unknown names are returned unchanged."""
    return next((m for m in MODULES if m.lower() == name.lower()), name)


def any_scope(*names: str) -> ScopeRule:
    """Any one of these scopes (scopes compare case-insensitively)."""
    wanted = frozenset(name.lower() for name in names)
    return lambda granted, module: not wanted.isdisjoint(granted)


def module_scope(*actions: str) -> ScopeRule:
    """ZohoCRM.modules.ALL, ZohoCRM.modules.{module}.ALL, or one of ``actions`` on all modules or this one."""
    def rule(granted: set, module: str) -> bool:
        names = ["ZohoCRM.modules.ALL", f"ZohoCRM.modules.{module}.ALL"]
        for action in actions:
            names += [f"ZohoCRM.modules.{action}", f"ZohoCRM.modules.{module}.{action}"]
        return any(name.lower() in granted for name in names)
    return rule


def all_scopes(*rules: ScopeRule) -> ScopeRule:
    return lambda granted, module: all(rule(granted, module) for rule in rules)


@dataclass
class ApiRoute:
    """What an API call resolved to: ``operation`` and ``module`` name it in calls() and faults."""

    operation: str
    module: str | None
    endpoint: Route | None = None
    params: dict[str, Any] = field(default_factory=dict)
    error: SandboxError | None = None  # 404/405 answered after authentication

    def scope_ok(self, granted: set) -> bool:
        """Per-operation scope rules of doc §2.7."""
        rule = self.endpoint.options.get("scope") if self.endpoint is not None else None
        return True if rule is None else rule(granted, (self.module or "").lower())

    def cost(self, req: Any) -> int:
        """Credits per call (doc §8.1); the endpoint's ``cost`` option, 1 by default."""
        cost = self.endpoint.options.get("cost", 1) if self.endpoint is not None else 1
        return cost(req) if callable(cost) else cost
