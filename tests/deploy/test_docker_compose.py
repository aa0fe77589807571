"""Static checks of docker-compose.yaml, Dockerfile and .dockerignore.

No Docker engine is needed: the compose file is parsed with PyYAML (anchors and ``<<`` merges
resolve as Compose resolves them) and checked for what Compose and Airflow would only report at
``docker compose up``. When the ``docker compose`` CLI plugin is present, ``docker compose config``
validates the file against the Compose specification too (that needs no engine either).

This module must not import Airflow.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import shutil
import subprocess
import sys
import types
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
SETTINGS_FILE = ROOT / "plugins" / "zoho_store_sync" / "settings.py"

AIRFLOW_VERSION = "3.3.2"
PYTHON_VERSION = "3.11"

INFRA_SERVICES = {"postgres", "redis"}
AIRFLOW_SERVICES = {
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
    "airflow-init",
    "airflow-cli",
    "flower",
}
# Services that run for as long as the cluster does (init is one-shot, cli and flower opt-in).
LONG_RUNNING = {
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
}

# The x-airflow-common environment, exactly as the deployment brief specifies it.
EXPECTED_COMMON_ENV = {
    "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
    "AIRFLOW__CORE__AUTH_MANAGER": ("airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"),
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "airflow:admin",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql+psycopg2://airflow:airflow@postgres/airflow",
    "AIRFLOW__CELERY__RESULT_BACKEND": "db+postgresql://airflow:airflow@postgres/airflow",
    "AIRFLOW__CELERY__BROKER_URL": "redis://:@redis:6379/0",
    "AIRFLOW__CORE__FERNET_KEY": "${AIRFLOW_FERNET_KEY:-}",
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": "http://airflow-apiserver:8080/execution/",
    "AIRFLOW__API_AUTH__JWT_SECRET": "${AIRFLOW_JWT_SECRET:-change-me-to-a-long-random-string}",
    "AIRFLOW__CORE__LOAD_EXAMPLES": "false",
    "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "true",
    "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "true",
    "AIRFLOW__SECRETS__USE_CACHE": "true",
    "AIRFLOW_CONFIG": "/opt/airflow/config/airflow.cfg",
    "ZOHO_SYNC_INCLUDE_DIR": "/opt/airflow/include",
    "ZOHO_SYNC_STAGING_URL": "file:///opt/airflow/staging",
    "ZOHO_SYNC_STUCK_RUN_ALERT_SECONDS": "3600",  # a sync stuck an hour (its pool) misses a deadline saying so
    "AIRFLOW_CONN_ZOHO_SYNC_STATE_DB": "postgresql://airflow:airflow@postgres:5432/zoho_sync_state",
}


# --- helpers ---------------------------------------------------------------------------------------

_INTERPOLATION = re.compile(
    r"\$\$"  # escaped dollar
    r"|\$\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
    r"|\$(?P<invalid>)"  # anything else after a "$" is an error for Compose ("invalid interpolation format")
)


def interpolate(value: str, env: dict[str, str] | None = None) -> str:
    """Compose's variable interpolation (the subset the file uses), against ``env`` (default: none set)."""
    env = env or {}

    def repl(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        if m.group("invalid") is not None:
            raise AssertionError(f"invalid interpolation in {value!r}: escape the container's $ as $$")
        name = m.group("braced") or m.group("bare")
        op, arg = m.group("op"), m.group("arg") or ""
        current = env.get(name)
        if op == ":-":
            return current if current else arg
        if op == "-":
            return current if current is not None else arg
        if op in (":?", "?"):
            if not current:
                raise AssertionError(f"required variable {name} is not set: {arg}")
            return current
        if op == ":+":
            return arg if current else ""
        if op == "+":
            return arg if current is not None else ""
        return current or ""

    return _INTERPOLATION.sub(repl, value)


def compose_variables(value: str) -> set[str]:
    """Names of the variables Compose interpolates in ``value`` (``$$`` is an escape, not a variable)."""
    return {
        m.group("braced") or m.group("bare")
        for m in _INTERPOLATION.finditer(value)
        if m.group("braced") or m.group("bare")
    }


def walk_strings(node):
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from walk_strings(key)
            yield from walk_strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk_strings(item)


def env_of(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # KEY=VALUE list syntax
        env = dict(item.split("=", 1) for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def command_text(service: dict) -> str:
    command = service.get("command")
    return command if isinstance(command, str) else " ".join(command or [])


def volume_mounts(service: dict) -> dict[str, str]:
    """Container path -> source (host path or named volume), after interpolation with no env set."""
    mounts = {}
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            mounts[volume["target"]] = interpolate(str(volume.get("source", "")))
        else:
            parts = interpolate(volume).split(":")
            mounts[parts[1]] = parts[0]
    return mounts


def depends_on(service: dict) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: "service_started" for name in deps}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def healthcheck_text(service: dict) -> str:
    test = (service.get("healthcheck") or {}).get("test")
    return test if isinstance(test, str) else " ".join(test or [])


def init_script(compose: dict) -> str:
    """The bash script airflow-init runs, as bash receives it (after Compose interpolation)."""
    init = compose["services"]["airflow-init"]
    assert init.get("entrypoint") in ("/bin/bash", ["/bin/bash"]), "airflow-init must run bash"
    command = init["command"]
    assert command[0] == "-c", command
    return interpolate(command[1])


def settings_constant(name: str) -> str:
    """A string constant of plugins/zoho_store_sync/settings.py, read without importing anything."""
    tree = ast.parse(SETTINGS_FILE.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == name for target in node.targets
        ):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{name} not found in {SETTINGS_FILE}")


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, args = line.partition(" ")
            instructions.append((keyword.upper(), args.strip()))
    return instructions


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys, as Compose's YAML parser does (PyYAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise AssertionError(f"duplicate key {key!r} at line {key_node.start_mark.line + 1}")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


@pytest.fixture(scope="module")
def raw() -> str:
    return COMPOSE_FILE.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def compose(raw) -> dict:
    return yaml.safe_load(raw)


@pytest.fixture(scope="module")
def services(compose) -> dict[str, dict]:
    return compose["services"]


@pytest.fixture(scope="module")
def common(compose) -> dict:
    return compose["x-airflow-common"]


@pytest.fixture(scope="module")
def common_env(common) -> dict[str, str]:
    return env_of(common)


# --- services, image, environment -------------------------------------------------------------------


def test_compose_file_has_no_duplicate_keys(raw):
    yaml.load(raw, Loader=_StrictLoader)


def test_compose_defines_the_official_services_plus_nothing_unexpected(services):
    assert set(services) == INFRA_SERVICES | AIRFLOW_SERVICES
    assert services["postgres"]["image"] == "postgres:16"
    assert services["redis"]["image"] == "redis:7.2-bookworm"
    assert services["airflow-cli"]["profiles"] == ["debug"]
    assert services["flower"]["profiles"] == ["flower"]
    for name in LONG_RUNNING | {"airflow-init"}:
        assert "profiles" not in services[name], f"{name} must start with a plain `docker compose up`"


def test_every_airflow_service_is_built_from_the_project_dockerfile_as_one_image(services, common):
    assert common["build"] == ".", "the image must be built from ./Dockerfile, not pulled"
    assert common["image"] == "${AIRFLOW_IMAGE_NAME:-zoho-store-sync-airflow:3.3.2}"
    for name in AIRFLOW_SERVICES:
        assert services[name]["build"] == common["build"], name
        assert services[name]["image"] == common["image"], name


def test_no_service_installs_packages_at_container_start(raw, services):
    assert "_PIP_ADDITIONAL_REQUIREMENTS" not in {key for service in services.values() for key in env_of(service)}
    assert "_PIP_ADDITIONAL_REQUIREMENTS:" not in raw


def test_common_environment_is_exactly_the_specified_one(common_env):
    assert common_env == EXPECTED_COMMON_ENV


def test_every_airflow_service_gets_the_whole_common_environment(services, common_env):
    for name in AIRFLOW_SERVICES:
        env = env_of(services[name])
        overridden = {key: env.get(key) for key in common_env if env.get(key) != common_env[key]}
        assert not overridden, f"{name} drops or overrides common settings: {overridden}"


def test_every_airflow_service_runs_as_airflow_uid_with_group_0_except_init_as_root(services, common):
    assert common["user"] == "${AIRFLOW_UID:-50000}:0"
    for name in AIRFLOW_SERVICES - {"airflow-init"}:
        assert services[name]["user"] == common["user"], name
    assert services["airflow-init"]["user"] == "0:0"


def test_env_file_dot_env_is_optional(services):
    for name in AIRFLOW_SERVICES:
        assert services[name]["env_file"] == [{"path": ".env", "required": False}], name


def test_the_compose_version_the_env_file_form_needs_is_stated_in_the_header_and_the_readme(raw, services):
    # `env_file: [{path, required}]` arrived in Docker Compose 2.24.0; older releases reject the file.
    assert any(
        isinstance(entry, dict) and "required" in entry
        for name in AIRFLOW_SERVICES
        for entry in services[name]["env_file"]
    )
    header = raw.split("\n---", 1)[0]
    assert re.search(r"Docker Compose >= 2\.24\.0", header), "state the minimum Compose version in the header"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert re.search(r"Docker Compose >= 2\.24", readme), "state the minimum Compose version in the README"


def test_airflow_3_components_and_celery_worker_run_the_right_commands(services):
    assert command_text(services["airflow-apiserver"]) == "api-server"
    assert command_text(services["airflow-scheduler"]) == "scheduler"
    assert command_text(services["airflow-dag-processor"]) == "dag-processor"
    assert command_text(services["airflow-triggerer"]) == "triggerer"
    assert command_text(services["airflow-worker"]) == "celery worker"
    assert env_of(services["airflow-worker"])["DUMB_INIT_SETSID"] == "0"
    assert command_text(services["flower"]) == "celery flower"


def test_celery_executor_broker_and_result_backend_point_at_existing_services(services, common_env):
    assert common_env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    broker = urlsplit(common_env["AIRFLOW__CELERY__BROKER_URL"])
    assert broker.scheme == "redis" and broker.hostname in services
    assert str(broker.port) in [str(port) for port in services["redis"]["expose"]]
    for key in ("AIRFLOW__CELERY__RESULT_BACKEND", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"):
        uri = urlsplit(common_env[key])
        assert uri.hostname == "postgres", key
        assert uri.path == "/" + env_of(services["postgres"])["POSTGRES_DB"], key
        assert uri.username == env_of(services["postgres"])["POSTGRES_USER"], key


def test_simple_auth_manager_is_used_because_no_fab_provider_is_installed(common_env):
    assert common_env["AIRFLOW__CORE__AUTH_MANAGER"].endswith(".SimpleAuthManager")
    assert "fab" not in common_env["AIRFLOW__CORE__AUTH_MANAGER"].lower()
    users = common_env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"].split(",")
    assert "airflow:admin" in users


def test_execution_api_server_url_points_at_the_apiserver_service_and_port(services, common_env):
    url = urlsplit(common_env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
    assert url.scheme == "http"
    assert url.path == "/execution/"
    assert url.hostname in services, f"no service named {url.hostname}"
    apiserver = services[url.hostname]
    assert command_text(apiserver) == "api-server"
    container_ports = {str(port).rsplit(":", 1)[-1] for port in apiserver.get("ports", [])}
    assert str(url.port) in container_ports, (url.port, container_ports)
    # The healthcheck probes the same port inside the container.
    assert f"http://localhost:{url.port}/" in healthcheck_text(apiserver)


def test_jwt_secret_is_identical_and_non_empty_in_every_airflow_component(services):
    secrets = {name: env_of(services[name]).get("AIRFLOW__API_AUTH__JWT_SECRET") for name in AIRFLOW_SERVICES}
    assert len(set(secrets.values())) == 1, secrets
    (secret,) = set(secrets.values())
    assert interpolate(secret), "the JWT secret must not be empty when AIRFLOW_JWT_SECRET is unset"
    assert interpolate(secret, {"AIRFLOW_JWT_SECRET": "from-env"}) == "from-env"


def test_examples_are_not_loaded_and_new_dags_start_paused(common_env):
    assert common_env["AIRFLOW__CORE__LOAD_EXAMPLES"].lower() == "false"
    assert common_env["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"].lower() == "true"


# --- volumes ------------------------------------------------------------------------------------------


def test_project_folders_are_mounted_from_folders_that_exist_in_the_repo(services, common_env):
    expected = {
        "/opt/airflow/dags": "./dags",
        "/opt/airflow/plugins": "./plugins",
        "/opt/airflow/include": "./include",
        "/opt/airflow/logs": "./logs",
        "/opt/airflow/config": "./config",
    }
    for name in AIRFLOW_SERVICES:
        mounts = volume_mounts(services[name])
        for target, source in expected.items():
            assert mounts.get(target) == source, (name, target, mounts.get(target))
    for folder in ("dags", "plugins", "include"):  # logs/ and config/ are created by airflow-init
        assert (ROOT / folder).is_dir(), f"{folder}/ is mounted but missing from the repo"
    assert common_env["ZOHO_SYNC_INCLUDE_DIR"] == "/opt/airflow/include"
    assert (ROOT / "include" / "mappings").is_dir()


def test_staging_volume_is_mounted_in_every_airflow_service_at_the_staging_url_path(compose, services, common_env):
    staging = urlsplit(common_env["ZOHO_SYNC_STAGING_URL"])
    assert staging.scheme == "file" and staging.path
    assert "staging" in compose["volumes"], "staging must be a named volume"
    for name in AIRFLOW_SERVICES:
        assert volume_mounts(services[name]).get(staging.path) == "staging", name


def test_postgres_data_lives_in_a_named_volume(compose, services):
    assert "postgres-db-volume" in compose["volumes"]
    assert volume_mounts(services["postgres"])["/var/lib/postgresql/data"] == "postgres-db-volume"


def test_every_named_volume_used_is_declared(compose, services):
    declared = set(compose["volumes"])
    for name, service in services.items():
        for source in volume_mounts(service).values():
            if not source.startswith((".", "/", "~")):
                assert source in declared, (name, source)


# --- state database and pool -------------------------------------------------------------------------


def test_state_db_connection_is_the_one_the_code_uses_and_points_at_postgres(services, common_env):
    conn_id = settings_constant("STATE_DB_CONN_ID")
    env_name = f"AIRFLOW_CONN_{conn_id.upper()}"
    assert env_name in common_env, f"the code reads connection {conn_id!r}: {env_name} is not set"
    uri = urlsplit(common_env[env_name])
    assert uri.scheme in ("postgres", "postgresql")
    assert uri.hostname == "postgres" and uri.hostname in services
    assert (uri.port or 5432) == 5432
    postgres_env = env_of(services["postgres"])
    assert (uri.username, uri.password) == (postgres_env["POSTGRES_USER"], postgres_env["POSTGRES_PASSWORD"])
    assert uri.path == "/zoho_sync_state"
    assert uri.path.lstrip("/") != postgres_env["POSTGRES_DB"], "state must not share Airflow's metadata DB"


def _state_db_snippet(script: str) -> str:
    match = re.search(r"/entrypoint python -c '\n(?P<code>.*?)\n' \|\| exit 1\n", script, re.S)
    assert match, "airflow-init must create the state database with `/entrypoint python -c '...' || exit 1`"
    return match.group("code")


def _run_state_db_snippet(code: str, uri: str, existing: set[str], monkeypatch) -> dict:
    """Run the snippet against a stub psycopg2; return what it connected to and executed."""
    calls: dict = {"executed": [], "connect": None, "closed": False}

    class Cursor:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def execute(self, query, params=None):
            calls["executed"].append((str(query), params))
            self._row = (1,) if params and params[0] in existing else None

        def fetchone(self):
            return self._row

    class Connection:
        autocommit = False

        def cursor(self):
            assert self.autocommit, "CREATE DATABASE cannot run inside a transaction"
            return Cursor()

        def close(self):
            calls["closed"] = True

    def connect(**kwargs):
        calls["connect"] = kwargs
        return Connection()

    class SQL(str):
        def format(self, *args):
            return SQL(str.format(self, *args))

    class Identifier(str):
        def __new__(cls, name):
            return str.__new__(cls, '"' + name.replace('"', '""') + '"')

    psycopg2 = types.ModuleType("psycopg2")
    psycopg2.connect = connect
    psycopg2_sql = types.ModuleType("psycopg2.sql")
    psycopg2_sql.SQL, psycopg2_sql.Identifier = SQL, Identifier
    psycopg2.sql = psycopg2_sql
    monkeypatch.setitem(sys.modules, "psycopg2", psycopg2)
    monkeypatch.setitem(sys.modules, "psycopg2.sql", psycopg2_sql)
    monkeypatch.setenv("AIRFLOW_CONN_ZOHO_SYNC_STATE_DB", uri)
    exec(compile(code, "<airflow-init state db>", "exec"), {"__name__": "__main__"})
    return calls


def test_init_creates_the_state_database_when_missing_and_only_then(compose, common_env, monkeypatch, capsys):
    code = _state_db_snippet(init_script(compose))
    # It reaches bash inside single quotes and Compose unchanged.
    assert "'" not in code and "$" not in code
    uri = common_env["AIRFLOW_CONN_ZOHO_SYNC_STATE_DB"]

    calls = _run_state_db_snippet(code, uri, existing=set(), monkeypatch=monkeypatch)
    assert calls["connect"] == {
        "host": "postgres",
        "port": 5432,
        "user": "airflow",
        "password": "airflow",
        "dbname": "postgres",
    }
    assert ('CREATE DATABASE "zoho_sync_state"', None) in calls["executed"]
    assert calls["closed"]

    calls = _run_state_db_snippet(code, uri, existing={"zoho_sync_state"}, monkeypatch=monkeypatch)
    assert not [query for query, _ in calls["executed"] if query.startswith("CREATE")]
    assert "already exists" in capsys.readouterr().out


def test_init_migrates_the_state_database_with_the_documented_command_once_it_exists(compose, services):
    script = init_script(compose)
    lines = [line.strip() for line in script.splitlines() if "zoho_store_sync.cli" in line]
    assert len(lines) == 1, lines
    command, _, on_failure = lines[0].partition("||")
    assert on_failure.strip() == "exit 1", "a failed migration must fail airflow-init (the services wait for it)"
    words = shlex.split(command)
    # plugins/ (where the package lives) on the path, as mounted; through the entrypoint, like the other steps
    assert words[0] == "PYTHONPATH=/opt/airflow/plugins"
    assert volume_mounts(services["airflow-init"])["/opt/airflow/plugins"] == "./plugins"
    assert words[1:4] == ["/entrypoint", "python", "-m"]
    assert words[4:7] == ["zoho_store_sync.cli", "db", "migrate"]
    assert words[words.index("--conn-id") + 1] == settings_constant("STATE_DB_CONN_ID")
    # after the state database is created, before the pool (and so before any service starts a sync)
    assert script.index("CREATE DATABASE") < script.index(lines[0]) < script.index("airflow pools set")
    # the command and its options exist (the CLI parses them without importing Airflow)
    from zoho_store_sync.cli import build_parser

    args = build_parser().parse_args(words[5:])
    assert (args.command, args.db_command, args.conn_id) == ("db", "migrate", settings_constant("STATE_DB_CONN_ID"))


def test_init_creates_the_zoho_api_pool_the_code_uses(compose):
    pool = settings_constant("DEFAULT_ZOHO_POOL")
    commands = [
        shlex.split(line.split("||")[0]) for line in init_script(compose).splitlines() if "airflow pools set" in line
    ]
    assert len(commands) == 1, commands
    args = commands[0]
    assert args[:4] == ["/entrypoint", "airflow", "pools", "set"], args
    name, slots, description = args[4:7]
    assert name == pool == "zoho_api"
    assert int(slots) == 10
    assert description


def test_init_migrates_the_db_and_prepares_every_mounted_folder(compose, services):
    init = services["airflow-init"]
    env = env_of(init)
    assert env["_AIRFLOW_DB_MIGRATE"] == "true"
    assert env["_AIRFLOW_WWW_USER_CREATE"] == "true"
    # The image's entrypoint exits 1 when user creation is asked for without a password.
    assert interpolate(env["_AIRFLOW_WWW_USER_PASSWORD"])
    assert "restart" not in init, "a one-shot service must not restart"
    script = init_script(compose)
    assert "/entrypoint airflow version" in script  # runs the migration through the entrypoint
    mounted = {target.rsplit("/", 1)[-1] for target in volume_mounts(init) if target.startswith("/opt/airflow/")}
    for verb in ("mkdir -v -p", "chown -v -R"):
        line = next(line for line in script.splitlines() if line.strip().startswith(verb))
        folders = set(re.search(r"/opt/airflow/\{([^}]*)\}", line).group(1).split(","))
        assert mounted <= folders, f"{verb} misses {mounted - folders}"


def test_init_script_is_valid_bash_after_compose_interpolation(compose):
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is not installed")
    result = subprocess.run([bash, "-n", "-c", init_script(compose)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_every_value_is_valid_for_compose_interpolation(compose):
    for text in walk_strings(compose):
        interpolate(text)  # raises on a "$" Compose would reject


def test_container_side_dollar_signs_are_escaped_from_compose(compose, services):
    for name in ("airflow-dag-processor", "airflow-triggerer"):
        assert '--hostname "${HOSTNAME}"' in interpolate(healthcheck_text(services[name])), name
    assert '-d "celery@${HOSTNAME}"' in interpolate(healthcheck_text(services["airflow-worker"]))
    script = init_script(compose)
    assert "export AIRFLOW_UID=$(id -u)" in script
    assert "awk '{print $4}'" in script


def test_every_compose_variable_is_documented_in_the_header(raw, compose):
    header = raw.split("\n---", 1)[0]
    used = set()
    for text in walk_strings(compose):
        used |= compose_variables(text)
    undocumented = {name for name in used if not re.search(rf"^# {re.escape(name)}\b", header, re.M)}
    assert not undocumented, f"document these in the header comment: {sorted(undocumented)}"


# --- healthchecks and start order --------------------------------------------------------------------


def test_every_service_healthy_dependency_has_a_healthcheck(services):
    for name, service in services.items():
        for target, condition in depends_on(service).items():
            assert target in services, f"{name} depends on unknown service {target}"
            if condition == "service_healthy":
                check = services[target].get("healthcheck") or {}
                assert check.get("test") and not check.get("disable"), f"{name} waits for {target} to be healthy"
            elif condition == "service_completed_successfully":
                assert "restart" not in services[target], f"{target} never completes"


def test_airflow_services_wait_for_healthy_postgres_and_redis_and_for_init(services):
    for name in AIRFLOW_SERVICES:
        deps = depends_on(services[name])
        assert deps.get("postgres") == "service_healthy", name
        assert deps.get("redis") == "service_healthy", name
    for name in LONG_RUNNING | {"flower"}:
        assert depends_on(services[name]).get("airflow-init") == "service_completed_successfully", name
    assert depends_on(services["airflow-worker"]).get("airflow-apiserver") == "service_healthy"


def test_each_component_has_its_own_healthcheck(services, common_env):
    assert services["postgres"]["healthcheck"]["test"] == ["CMD", "pg_isready", "-U", "airflow"]
    assert "redis-cli" in healthcheck_text(services["redis"])
    assert "http://localhost:8080/api/v2/monitor/health" in healthcheck_text(services["airflow-apiserver"])
    assert "http://localhost:8974/health" in healthcheck_text(services["airflow-scheduler"])
    assert common_env["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"] == "true"  # serves :8974
    for name, job in (("airflow-dag-processor", "DagProcessorJob"), ("airflow-triggerer", "TriggererJob")):
        test = services[name]["healthcheck"]["test"]
        assert test[0] == "CMD-SHELL", name
        assert test[1] == f'airflow jobs check --job-type {job} --hostname "$${{HOSTNAME}}"', name
    assert "inspect ping" in healthcheck_text(services["airflow-worker"])
    for name in LONG_RUNNING:
        assert services[name].get("restart") == "always", name


# --- secrets ---------------------------------------------------------------------------------------------

# Values that may appear literally: the throwaway credentials of the local Postgres.
_DEV_DEFAULTS = {"airflow"}
_SECRET_NAME = re.compile(r"SECRET|TOKEN|PASSWORD|PASSWD|API_KEY|CLIENT_ID|PRIVATE_KEY|FERNET", re.I)


def test_no_secret_literal_is_in_the_compose_file(raw, services):
    # Zoho OAuth client ids / secrets / tokens look like 1000.<hex or upper alnum>...
    assert not re.search(r"\b1000\.[0-9A-Za-z]{20,}", raw), "a Zoho client id or token is in the file"
    assert not re.search(
        r"(client_secret|refresh_token|access_token|grant_token)[\"']?\s*[:=]\s*[\"']?[\w.-]{6,}", raw, re.I
    ), "a Zoho OAuth value is in the file"
    for name, service in services.items():
        for key, value in env_of(service).items():
            option = key.rsplit("__", 1)[-1]  # AIRFLOW__SECRETS__USE_CACHE is no secret
            if _SECRET_NAME.search(option) and value not in _DEV_DEFAULTS:
                assert re.fullmatch(r"\$\{[A-Za-z_][A-Za-z0-9_]*(:?-[^}]*)?\}", value), (
                    f"{name}: {key} must come from the environment, e.g. ${{{key}}}"
                )
    for text in walk_strings(services):
        for match in re.finditer(r"[a-z0-9+.-]+://([^/@\s:]*):([^/@\s]*)@", text):
            assert match.group(2) in _DEV_DEFAULTS | {""}, f"credential in URI: {match.group(0)}"


# --- Dockerfile --------------------------------------------------------------------------------------------


def test_dockerfile_base_image_is_the_pinned_slim_airflow_on_python_3_11():
    # slim: Airflow core only, so every installed package is one of the lock's and `pip check` can pass
    froms = [args for keyword, args in dockerfile_instructions() if keyword == "FROM"]
    assert froms == [f"apache/airflow:slim-{AIRFLOW_VERSION}-python{PYTHON_VERSION}"]


def _pip_runs() -> list[list[list[str]]]:
    """Each RUN that calls pip, as its `&&`-separated commands, each split into words."""
    runs = []
    for keyword, args in dockerfile_instructions():
        if keyword == "RUN" and "pip" in args:
            runs.append([shlex.split(command) for command in args.split("&&")])
    return runs


def test_dockerfile_installs_requirements_with_the_lock_and_pins_airflow():
    instructions = dockerfile_instructions()
    copies = [args.split() for keyword, args in instructions if keyword == "COPY"]
    assert ["requirements.txt", "constraints.txt", "/tmp/"] in copies
    runs = _pip_runs()
    assert len(runs) == 2, runs  # the lock, then the distribution on top of it
    (args,) = runs[0]
    assert args[:3] == ["pip", "install", "--no-cache-dir"]
    assert f"apache-airflow=={AIRFLOW_VERSION}" in args
    assert args[args.index("-r") + 1] == "/tmp/requirements.txt"
    assert args[args.index("-c") + 1] == "/tmp/constraints.txt"
    requirements = (ROOT / "requirements.txt").read_text(encoding="utf-8")
    # the slim base image ships no provider: the lock brings what docker-compose.yaml runs
    for package in (
        "apache-airflow-providers-celery",
        "apache-airflow-providers-postgres",
        "asyncpg",
        "redis",
        "celery",
    ):
        assert re.search(rf"^{re.escape(package)}(\[[^]]*\])?==", requirements, re.M), package


def test_dockerfile_installs_the_distribution_and_fails_its_build_on_pip_check():
    instructions = dockerfile_instructions()
    copies = [args.split() for keyword, args in instructions if keyword == "COPY"]
    assert ["--chown=airflow:0", "pyproject.toml", "README.md", "/opt/airflow/"] in copies
    assert ["--chown=airflow:0", "plugins/", "/opt/airflow/plugins/"] in copies
    install, check = _pip_runs()[1]
    assert install[:4] == ["pip", "install", "--no-cache-dir", "--no-deps"]
    # editable from the image's plugins/ folder: the entry point registers the provider, and the plugins/
    # docker-compose.yaml mounts over it is the code that runs
    assert install[install.index("-e") + 1] == "/opt/airflow"
    assert check == ["pip", "check"], "a broken dependency set must fail the build"
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert 'package-dir = {"" = "plugins"}' in pyproject
    assert "[project.entry-points.apache_airflow_provider]" in pyproject
    # the copied files exist (a missing one fails `docker build` late)
    for name in ("pyproject.toml", "README.md", "plugins/zoho_store_sync/provider_info.py"):
        assert (ROOT / name).is_file(), name


def test_the_image_runs_the_installed_package_where_compose_mounts_plugins(services):
    for name in AIRFLOW_SERVICES:
        assert volume_mounts(services[name]).get("/opt/airflow/plugins") == "./plugins", name


def test_image_tag_requirements_and_lock_agree_on_the_airflow_version(common):
    assert common["image"].rstrip("}").endswith(f":{AIRFLOW_VERSION}")
    for name in ("requirements.txt", "constraints.txt"):
        path = ROOT / name
        assert path.is_file(), f"the Dockerfile copies {name}, which is missing"
        pins = re.findall(r"^apache-airflow==(\S+)", path.read_text(encoding="utf-8"), re.M)
        assert pins == [AIRFLOW_VERSION], f"{name} pins apache-airflow to {pins}"


def test_dockerignore_keeps_local_state_out_of_the_build_context():
    patterns = {
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    for pattern in (".venv", ".airflow", ".demo", "logs", "bench/results*", ".git"):
        assert pattern in patterns, pattern
    assert patterns & {"__pycache__", "**/__pycache__"}
    for needed in (
        "requirements.txt",
        "constraints.txt",
        "Dockerfile",
        "pyproject.toml",
        "README.md",
        "plugins",
        "plugins/",
    ):
        assert needed not in patterns and "*" not in patterns, needed


# --- the real Compose parser, when installed ---------------------------------------------------------------


def test_docker_compose_config_accepts_the_file():
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("the docker client is not installed, so `docker compose config` cannot run")
    env = {key: value for key, value in os.environ.items() if not key.startswith("COMPOSE_")}
    version = subprocess.run([docker, "compose", "version"], capture_output=True, text=True, env=env, timeout=60)
    if version.returncode != 0:
        reason = (version.stderr.strip().splitlines() or ["no output"])[0]
        pytest.skip(f"`docker compose` is unavailable (no compose CLI plugin): {reason}")
    result = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE_FILE), "config", "-q"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
