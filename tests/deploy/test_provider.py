"""The installable distribution and its Airflow provider: what `pip install .` gives an existing Airflow.

The wheel is built from pyproject.toml and installed by path (``installed_distribution``, tests/deploy/conftest.py);
Airflow then lists the provider and the connection types ``zoho_crm``, ``magento`` and ``deconetwork`` with their
forms, read from the provider's data as the UI reads them. The forms store each field under the extra key the
hooks already read, so connections made before the forms (type ``http``, extras typed by hand) keep working.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.conftest import ROOT, InstalledDistribution

TYPES = {
    "zoho_crm": (
        "zoho_store_sync.connection_types.ZohoCrmConnectionHook",
        "zoho_store_sync.hooks.zoho_crm",
        "ZohoCrmHook",
        "zoho_conn_id",
    ),
    "magento": (
        "zoho_store_sync.connection_types.MagentoConnectionHook",
        "zoho_store_sync.hooks.magento",
        "MagentoHook",
        "magento_conn_id",
    ),
    "deconetwork": (
        "zoho_store_sync.connection_types.DecoNetworkConnectionHook",
        "zoho_store_sync.hooks.deconetwork",
        "DecoNetworkHook",
        "deconetwork_conn_id",
    ),
}


def run_python(dist: InstalledDistribution, code: str, tmp_path: Path) -> str:
    """Run ``code`` in a fresh interpreter that sees the installed wheel, not the repo's plugins/."""
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=dist.env(), capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def airflow_json(dist: InstalledDistribution, tmp_path: Path, *args: str) -> list[dict]:
    result = subprocess.run(
        [sys.executable, "-m", "airflow", *args, "-o", "json"],
        cwd=tmp_path,
        env=dist.env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()  # log lines may come first
    start = next(i for i, line in enumerate(lines) if line.startswith("["))
    return json.loads("\n".join(lines[start:]))


# --- the wheel -----------------------------------------------------------------------------------------------


def test_the_wheel_holds_the_whole_package_and_nothing_else(installed_distribution: InstalledDistribution):
    names = set(installed_distribution.names())
    sources = {
        str(path.relative_to(ROOT / "plugins"))
        for path in (ROOT / "plugins" / "zoho_store_sync").rglob("*.py")
        if "__pycache__" not in path.parts
    }
    assert sources <= names, f"missing from the wheel: {sorted(sources - names)}"
    assert "zoho_store_sync/state_migrations/versions/0001_baseline.py" in names  # Alembic revisions are code
    top_level = {name.split("/", 1)[0] for name in names}
    assert top_level == {"zoho_store_sync", "zoho_store_sync-0.1.0.dist-info"}, top_level  # no tests, dags, sandboxes


def test_the_wheel_declares_the_provider_entry_point_and_its_dependencies(
    installed_distribution: InstalledDistribution,
):
    import zipfile

    with zipfile.ZipFile(installed_distribution.wheel) as archive:
        entry_points = archive.read("zoho_store_sync-0.1.0.dist-info/entry_points.txt").decode()
        metadata = archive.read("zoho_store_sync-0.1.0.dist-info/METADATA").decode()
    assert "[apache_airflow_provider]\nprovider_info = zoho_store_sync.provider_info:get_provider_info" in entry_points
    requires = [line.split(":", 1)[1].strip() for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    for needed in ("apache-airflow", "pandas", "pyarrow", "SQLAlchemy", "PyYAML", "cryptography", "psycopg2-binary"):
        assert any(r.startswith(needed) for r in requires), needed
    for extra, packages in {
        "postgres": ("apache-airflow-providers-postgres", "asyncpg"),
        "celery": ("apache-airflow-providers-celery", "celery", "redis"),
    }.items():
        for package in packages:
            assert any(r.startswith(package) and f'extra == "{extra}"' in r for r in requires), (extra, package)


def test_every_runtime_dependency_is_pinned_by_the_lock():
    """`pip install . -c constraints.txt` installs tested versions only."""
    import re
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    pinned = {
        re.sub(r"[-_.]+", "-", line.split("==")[0]).lower()
        for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines()
        if "==" in line and not line.startswith("#")
    }
    wanted = [*project["dependencies"], *(r for extra in project["optional-dependencies"].values() for r in extra)]
    for requirement in wanted:
        name = re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9_.-]+", requirement).group(0)).lower()
        assert name in pinned, f"{requirement} is not pinned in constraints.txt"


# --- what Airflow sees ---------------------------------------------------------------------------------------


def test_the_package_is_imported_from_the_installed_distribution_without_plugins(
    installed_distribution: InstalledDistribution, tmp_path: Path
):
    out = run_python(
        installed_distribution, "import zoho_store_sync.cli, zoho_store_sync.pipeline as p; print(p.__file__)", tmp_path
    )
    assert out.strip().splitlines()[-1].startswith(str(installed_distribution.target)), out


def test_airflow_providers_list_shows_the_provider(installed_distribution: InstalledDistribution, tmp_path: Path):
    providers = {p["package_name"]: p for p in airflow_json(installed_distribution, tmp_path, "providers", "list")}
    assert providers["zoho-store-sync"]["version"] == "0.1.0"
    # the lock's providers, which the deployment needs (postgres connection type, CeleryExecutor)
    assert {"apache-airflow-providers-postgres", "apache-airflow-providers-celery"} <= set(providers)


def test_airflow_registers_the_three_connection_types(installed_distribution: InstalledDistribution, tmp_path: Path):
    hooks = {h["connection_type"]: h for h in airflow_json(installed_distribution, tmp_path, "providers", "hooks")}
    for conn_type, (class_name, _, _, conn_id_attribute) in TYPES.items():
        assert hooks[conn_type]["class"] == class_name
        assert hooks[conn_type]["package_name"] == "zoho-store-sync"
        assert hooks[conn_type]["conn_id_attribute_name"] == conn_id_attribute
    assert hooks["postgres"]["package_name"] == "apache-airflow-providers-postgres"  # README step 3's type


def test_the_ui_api_gets_each_form_from_the_provider_data(
    installed_distribution: InstalledDistribution, tmp_path: Path
):
    """What the api-server's /ui/connections/hook_meta answers (the real deployment test asks it over HTTP)."""
    out = run_python(
        installed_distribution,
        (
            "import json\n"
            "from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService\n"
            "print(json.dumps({m.connection_type: m.model_dump(mode='json') for m in HookMetaService.hook_meta_data()"
            " if m.connection_type in ('zoho_crm', 'magento', 'deconetwork')}))\n"
        ),
        tmp_path,
    )
    meta = json.loads(out.strip().splitlines()[-1])
    check_hook_meta(meta)


def check_hook_meta(meta: dict) -> None:
    """The three forms as the UI receives them (shared with the real deployment test)."""
    zoho, magento, deco = meta["zoho_crm"], meta["magento"], meta["deconetwork"]
    assert zoho["hook_name"] == "Zoho CRM"
    assert zoho["standard_fields"]["login"]["title"] == "Client ID"
    assert zoho["standard_fields"]["password"]["title"] == "Client secret"
    assert zoho["standard_fields"]["host"]["hidden"] is True
    fields = zoho["extra_fields"]
    assert set(fields) == {
        "data_centre",
        "environment",
        "refresh_token",
        "allow_custom_hosts",
        "accounts_url",
        "api_domain",
    }
    assert set(fields["data_centre"]["schema"]["enum"]) >= {"us", "eu", "in", "au", "jp", "ca", "sa", "cn", "uk"}
    assert fields["environment"]["schema"]["enum"] == ["production", "sandbox", "developer"]
    assert fields["refresh_token"]["schema"]["format"] == "password"
    for advanced in ("allow_custom_hosts", "accounts_url", "api_domain"):
        assert fields[advanced]["schema"]["section"].startswith("Advanced"), advanced
    assert magento["standard_fields"]["host"]["title"] == "Store URL"
    assert set(magento["extra_fields"]) == {
        "auth",
        "consumer_key",
        "consumer_secret",
        "access_token",
        "access_token_secret",
    }
    assert magento["extra_fields"]["auth"]["schema"]["enum"] == ["oauth1", "integration_token", "admin"]
    for secret in ("consumer_secret", "access_token_secret"):
        assert magento["extra_fields"][secret]["schema"]["format"] == "password"
    assert deco["standard_fields"]["login"]["title"] == "API username"
    assert set(deco["extra_fields"]) == {"timeout"}


# --- the provider data against Airflow's own schemas, and against the hooks ------------------------------------


def test_provider_info_is_valid_for_airflow():
    import airflow
    import jsonschema

    from zoho_store_sync.connection_types import CONNECTION_TYPES, ui_field_behaviour
    from zoho_store_sync.provider_info import get_provider_info

    package = Path(airflow.__file__).parent
    info = get_provider_info()
    jsonschema.validate(info, json.loads((package / "provider_info.schema.json").read_text()))
    behaviour_schema = json.loads((package / "customized_form_field_behaviours.schema.json").read_text())
    assert info["package-name"] == "zoho-store-sync"
    assert [t["connection-type"] for t in info["connection-types"]] == list(TYPES)
    for connection_type in CONNECTION_TYPES:
        jsonschema.validate(ui_field_behaviour(connection_type), behaviour_schema)
        for name, field in connection_type["conn-fields"].items():
            jsonschema.Draft7Validator.check_schema(field["schema"])
            assert field["label"] and field["description"], name


def test_the_registered_hook_classes_are_the_project_hooks():
    import importlib

    from airflow.sdk import BaseHook

    from zoho_store_sync import connection_types

    for conn_type, (class_name, module_name, base_name, conn_id_attribute) in TYPES.items():
        module, _, name = class_name.rpartition(".")
        hook = getattr(importlib.import_module(module), name)
        base = getattr(importlib.import_module(module_name), base_name)
        assert issubclass(hook, base) and issubclass(hook, BaseHook)
        assert (hook.conn_type, hook.conn_name_attr) == (conn_type, conn_id_attribute)
        assert getattr(connection_types, name) is hook  # defined once
        assert hook.get_ui_field_behaviour()["relabeling"]


def _connection(monkeypatch: pytest.MonkeyPatch, conn_id: str, **fields) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields))


def _form_extra(conn_type: str, **values) -> dict:
    """The extra a connection form saves: every field, the ones left empty as null (their default if any)."""
    from zoho_store_sync.connection_types import CONNECTION_TYPES

    (spec,) = [t for t in CONNECTION_TYPES if t["connection-type"] == conn_type]
    extra = {name: field["schema"].get("default") for name, field in spec["conn-fields"].items()}
    extra.update(values)
    return extra


def test_a_zoho_form_connection_and_an_old_http_one_read_the_same(monkeypatch: pytest.MonkeyPatch):
    from zoho_store_sync.hooks.zoho_crm import ZohoCrmHook

    _connection(
        monkeypatch,
        "zoho_form",
        conn_type="zoho_crm",
        login="1000.ID",
        password="secret",
        extra=_form_extra("zoho_crm", data_centre="eu", refresh_token="1000.rt"),
    )
    _connection(
        monkeypatch,
        "zoho_old",
        conn_type="http",
        login="1000.ID",
        password="secret",
        extra={"data_centre": "eu", "refresh_token": "1000.rt"},
    )
    form, old = ZohoCrmHook("zoho_form").settings, ZohoCrmHook("zoho_old").settings
    assert form.endpoints() == old.endpoints()
    assert (form.refresh_token, form.environment, form.api_domain) == (
        "1000.rt",
        "production",
        "https://www.zohoapis.eu",
    )
    # the advanced fields: a local sandbox
    _connection(
        monkeypatch,
        "zoho_sandbox",
        conn_type="zoho_crm",
        login="id",
        password="secret",
        extra=_form_extra(
            "zoho_crm", allow_custom_hosts=True, accounts_url="http://127.0.0.1:9", api_domain="http://127.0.0.1:9"
        ),
    )
    assert ZohoCrmHook("zoho_sandbox").settings.environment == "custom"


def test_a_magento_form_connection_signs_with_the_four_oauth1_fields(monkeypatch: pytest.MonkeyPatch):
    from zoho_store_sync.hooks.magento import MagentoHook

    four = {"consumer_key": "ck", "consumer_secret": "cs", "access_token": "at", "access_token_secret": "ats"}
    _connection(
        monkeypatch,
        "magento_form",
        conn_type="magento",
        host="https://shop.example.com",
        extra=_form_extra("magento", auth="oauth1", **four),
    )
    hook = MagentoHook("magento_form")
    assert hook._auth_mode() == "oauth1" and hook._oauth1_credentials() == four
    # README's form: secrets as JSON in the password
    _connection(
        monkeypatch,
        "magento_old",
        conn_type="http",
        host="https://shop.example.com",
        password=json.dumps({"consumer_secret": "cs", "access_token_secret": "ats"}),
        extra={"auth": "oauth1", "consumer_key": "ck", "access_token": "at"},
    )
    assert MagentoHook("magento_old")._oauth1_credentials() == four
    # the form's default auth is the hook's default when the extra has none
    _connection(
        monkeypatch,
        "magento_token",
        conn_type="magento",
        host="https://shop.example.com",
        password="t",
        extra=_form_extra("magento"),
    )
    assert MagentoHook("magento_token")._auth_mode() == "integration_token"


def test_a_deconetwork_form_connection_sets_the_timeout(monkeypatch: pytest.MonkeyPatch):
    from zoho_store_sync.hooks.deconetwork import DecoNetworkHook

    _connection(
        monkeypatch,
        "deco_form",
        conn_type="deconetwork",
        host="https://deco.example.com",
        login="u",
        password="p",
        extra=_form_extra("deconetwork", timeout=12),
    )
    hook = DecoNetworkHook("deco_form")
    hook._connection  # noqa: B018 - reading the connection applies its timeout
    assert hook.timeout == 12.0
    _connection(
        monkeypatch,
        "deco_empty",
        conn_type="deconetwork",
        host="https://deco.example.com",
        login="u",
        password="p",
        extra=_form_extra("deconetwork"),
    )
    empty = DecoNetworkHook("deco_empty")
    empty._connection  # noqa: B018
    assert empty.timeout == 60.0
