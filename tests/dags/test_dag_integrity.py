"""DAG integrity: the files import, one DAG per valid tenant with the right settings, broken entries named."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import timedelta

import pytest

from tests.conftest import REPO

VALID = [
    {"tenant_id": "acme_eu", "source": "magento", "store_conn_id": "magento_acme", "zoho_conn_id": "zoho_acme"},
    {
        "tenant_id": "beta",
        "source": "magento",
        "store_conn_id": "magento_beta",
        "zoho_conn_id": "zoho_beta",
        "schedule": "0 * * * *",
        "sync_leads": False,
        "zoho_pool": "zoho_org_beta",
        "zoho_max_concurrency": 5,
    },
]


def _dagbag(monkeypatch: pytest.MonkeyPatch, tenants) -> DagBag:  # noqa: F821
    from airflow.models import DagBag

    monkeypatch.setenv("AIRFLOW_VAR_ZOHO_SYNC_TENANTS", tenants if isinstance(tenants, str) else json.dumps(tenants))
    return DagBag(dag_folder=str(REPO / "dags"))


def test_dag_files_import_without_errors(monkeypatch):
    bag = _dagbag(monkeypatch, VALID)
    assert bag.import_errors == {}


def test_one_dag_per_tenant_named_zoho_sync_tenant_id(monkeypatch):
    bag = _dagbag(monkeypatch, VALID)
    assert {d for d in bag.dag_ids if d.startswith("zoho_sync__")} == {"zoho_sync__acme_eu", "zoho_sync__beta"}


def test_sync_dag_runs_every_30_minutes_by_default_one_run_at_a_time_without_catchup(monkeypatch):
    dag = _dagbag(monkeypatch, VALID).dags["zoho_sync__acme_eu"]
    assert dag.schedule == "*/30 * * * *"
    assert dag.max_active_runs == 1
    assert dag.catchup is False
    assert dag.doc_md and "acme_eu" in dag.doc_md
    assert {"zoho_sync", "magento", "tenant:acme_eu"} <= set(dag.tags)
    assert dag.params["dry_run"] is False and dag.params.get_param("dry_run").schema["type"] == "boolean"


def test_tenant_schedule_and_pool_are_honoured(monkeypatch):
    dag = _dagbag(monkeypatch, VALID).dags["zoho_sync__beta"]
    assert dag.schedule == "0 * * * *"
    upsert = dag.get_task("upsert_to_zoho")
    assert upsert.pool == "zoho_org_beta"
    assert upsert.pool_slots == 5


def test_every_task_has_retries_and_a_timeout(monkeypatch):
    dag = _dagbag(monkeypatch, VALID).dags["zoho_sync__acme_eu"]
    for task in dag.tasks:
        assert task.retries >= 2, task.task_id
        assert task.execution_timeout is not None and task.execution_timeout <= timedelta(hours=2), task.task_id
    assert [t.task_id for t in dag.topological_sort()] == [
        "plan_changes",
        "upsert_to_zoho",
        "report_summary",
        "release_tenant_lock",
    ]


def test_every_sync_task_runs_a_known_step_after_the_tasks_whose_results_it_reads(monkeypatch):
    from zoho_store_sync.operators import SYNC_STEPS, tenant_of

    dag = _dagbag(monkeypatch, VALID).dags["zoho_sync__acme_eu"]
    assert tenant_of(dag.dag_id) == "acme_eu"
    assert {t.task_id for t in dag.tasks} == set(SYNC_STEPS)
    for task in dag.tasks:
        upstream = {t.task_id for t in task.get_flat_relatives(upstream=True)}
        assert {task_id for task_id, _ in SYNC_STEPS[task.task_id].inputs.values()} <= upstream, task.task_id


def test_the_sync_dags_survive_the_serialization_the_scheduler_and_ui_read(monkeypatch):
    from airflow.serialization.serialized_objects import DagSerialization

    dag = _dagbag(monkeypatch, VALID).dags["zoho_sync__beta"]
    restored = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    assert set(restored.task_ids) == set(dag.task_ids)
    param = restored.params.get_param("dry_run")
    assert param.value is False and param.schema["type"] == "boolean" and "without writing" in param.description
    assert restored.get_task("upsert_to_zoho").pool_slots == 5


def test_malformed_tenant_is_named_with_its_field_and_other_tenants_still_load(monkeypatch):
    broken = VALID + [
        {"tenant_id": "gamma", "source": "magento", "store_conn_id": "m", "zoho_conn_id": "z", "sync_option": "most"},
        {"source": "magento"},
    ]
    bag = _dagbag(monkeypatch, broken)
    assert {"zoho_sync__acme_eu", "zoho_sync__beta"} <= set(bag.dag_ids)
    assert "zoho_sync__gamma" not in bag.dag_ids
    [(path, message)] = bag.import_errors.items()
    assert path.endswith("zoho_tenant_config_check.py")
    assert "tenant 'gamma'" in message and "'sync_option'" in message
    assert "tenant entry #3" in message and "'tenant_id'" in message


def test_a_bad_schedule_or_mapping_is_named_with_its_tenant_and_field_not_as_an_error_of_the_sync_file(monkeypatch):
    # A cron Airflow refuses used to surface as zoho_sync.py's "AirflowTimetableInvalid: [61 * * * *] ...",
    # naming neither tenant nor field; a mapping outside include/mappings built a DAG that failed mid-run.
    broken = VALID + [
        {
            "tenant_id": "gamma",
            "source": "magento",
            "store_conn_id": "m",
            "zoho_conn_id": "z",
            "schedule": "61 * * * *",
        },
        {
            "tenant_id": "delta",
            "source": "magento",
            "store_conn_id": "m",
            "zoho_conn_id": "z",
            "mapping": "../../etc/passwd",
        },
    ]
    bag = _dagbag(monkeypatch, broken)
    assert {d for d in bag.dag_ids if d.startswith("zoho_sync__")} == {"zoho_sync__acme_eu", "zoho_sync__beta"}
    [(path, message)] = bag.import_errors.items()
    assert path.endswith("zoho_tenant_config_check.py")
    assert "tenant 'gamma': field 'schedule': " in message and "61 * * * *" in message
    assert "tenant 'delta': field 'mapping': " in message


def test_variable_that_is_not_json_loads_no_tenant_dag_and_says_why(monkeypatch):
    bag = _dagbag(monkeypatch, "[{not json")
    assert not [d for d in bag.dag_ids if d.startswith("zoho_sync__")]
    assert any("not valid JSON" in m for m in bag.import_errors.values())


def test_missing_variable_means_no_tenant_and_no_error(monkeypatch):
    from airflow.models import DagBag

    monkeypatch.delenv("AIRFLOW_VAR_ZOHO_SYNC_TENANTS", raising=False)
    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    assert not [d for d in bag.dag_ids if d.startswith("zoho_sync__")]


def test_parsing_500_tenants_builds_all_dags(monkeypatch):
    tenants = [
        {"tenant_id": f"t{i:03d}", "source": "magento", "store_conn_id": "m", "zoho_conn_id": "z"} for i in range(500)
    ]
    started = time.perf_counter()
    bag = _dagbag(monkeypatch, tenants)
    elapsed = time.perf_counter() - started
    assert bag.import_errors == {}
    assert len([d for d in bag.dag_ids if d.startswith("zoho_sync__")]) == 500
    print(f"parsed 500 tenants in {elapsed:.2f} s")  # the figure is measured by `make bench`, not asserted


def test_parsing_the_dag_files_imports_no_data_library(tmp_path):
    # The DAG processor parses every file every 30 s: pandas, pyarrow and the HTTP hooks load only in tasks.
    probe = (
        "import sys; from airflow.models import DagBag; bag = DagBag(dag_folder=sys.argv[1]); "
        "assert not bag.import_errors, bag.import_errors; assert len(bag.dag_ids) == 4, bag.dag_ids; "
        "print(sorted(m for m in ('pandas', 'pyarrow', 'numpy', 'requests', 'zoho_store_sync.pipeline', "
        "'zoho_store_sync.hooks.zoho_crm') if m in sys.modules))"
    )
    env = {
        **os.environ,
        "AIRFLOW_VAR_ZOHO_SYNC_TENANTS": json.dumps(VALID),
        "PYTHONPATH": os.pathsep.join([str(REPO / "plugins"), str(REPO)]),
    }
    completed = subprocess.run(
        [sys.executable, "-c", probe, str(REPO / "dags")], env=env, capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stdout.strip().splitlines()[-1] == "[]"


def test_manual_dags_are_manual_only_with_docs_and_a_form(monkeypatch):
    bag = _dagbag(monkeypatch, VALID)
    reset, connect = bag.dags["zoho_reset"], bag.dags["zoho_connect"]
    for dag in (reset, connect):
        assert dag.schedule is None and dag.doc_md and dag.max_active_runs == 1
    assert reset.params.get_param("tenant").schema["enum"] == ["acme_eu", "beta"]
    assert reset.params["confirm"] == ""  # nothing happens unless the operator types the tenant id
    assert reset.params.get_param("record_types").schema["items"]["enum"] == ["Contacts", "Leads"]
    # a grant code in a run's conf stays readable in the UI and the API: the DAG takes none (the CLI prompts)
    assert set(connect.params) == {"tenant"}


def test_sync_releases_the_tenant_lock_as_a_teardown(monkeypatch):
    dag = _dagbag(monkeypatch, VALID).dags["zoho_sync__acme_eu"]
    assert dag.get_task("release_tenant_lock").is_teardown
    assert dag.get_task("plan_changes").is_setup  # it takes the lock (and lets it go itself when it fails)


def test_report_summary_declares_one_asset_per_module_of_its_tenant_and_the_reset_its_alias(monkeypatch):
    bag = _dagbag(monkeypatch, VALID)
    acme, beta = bag.dags["zoho_sync__acme_eu"], bag.dags["zoho_sync__beta"]
    assert [(a.name, a.uri, a.group) for a in acme.get_task("report_summary").outlets] == [
        ("zoho_sync/acme_eu/Contacts", "zoho-crm://acme_eu/Contacts", "zoho_sync"),
        ("zoho_sync/acme_eu/Leads", "zoho-crm://acme_eu/Leads", "zoho_sync"),
    ]
    assert [a.uri for a in beta.get_task("report_summary").outlets] == ["zoho-crm://beta/Contacts"]  # no Leads
    # plan_changes too: a run with nothing to write reports (and records its events) there
    assert [t.task_id for t in acme.tasks if t.outlets] == ["plan_changes", "report_summary"]
    assert acme.get_task("plan_changes").outlets == acme.get_task("report_summary").outlets
    [alias] = bag.dags["zoho_reset"].get_task("report_reset").outlets
    assert (type(alias).__name__, alias.name) == ("AssetAlias", "zoho_reset")


def test_alerts_import_no_notifier_when_parsed_and_only_their_tenants_dags_get_the_red_run_callback(monkeypatch):
    with_alerts = {**VALID[0], "alerts": {"notifiers": [{"class": "no_such_package.notifiers.Pager"}]}}
    bag = _dagbag(monkeypatch, [with_alerts, VALID[1]])
    assert bag.import_errors == {}  # the class is imported when an alert fires, not here
    assert bag.dags["zoho_sync__acme_eu"].on_failure_callback is not None
    assert bag.dags["zoho_sync__beta"].on_failure_callback is None
    assert bag.dags["zoho_reset"].on_failure_callback is not None
