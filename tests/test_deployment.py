"""docker-compose.yml cannot run here (no Docker engine): check it parses and names what the code expects."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def env_vars_read_by_the_code() -> set[str]:
    names: set[str] = set()
    for folder in ("leadflow", "ingest_api", "reports_api", "sensors", "assets", "pipelines"):
        for path in (ROOT / folder).rglob("*.py"):
            names |= set(re.findall(r'"(LEADFLOW_[A-Z_]+)"', path.read_text()))
    return names


def test_compose_has_the_production_services() -> None:
    assert set(compose()["services"]) >= {"kafka", "postgres", "ingest-api", "reports-api", "agent",
                                          "dagster-webserver", "dagster-daemon"}


def test_kafka_runs_in_kraft_mode_without_zookeeper() -> None:
    services = compose()["services"]
    assert "zookeeper" not in services
    assert "controller" in services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]


def test_app_services_get_the_variables_the_code_requires() -> None:
    services = compose()["services"]
    required = {"LEADFLOW_DATABASE_URL", "LEADFLOW_KAFKA_BOOTSTRAP_SERVERS", "LEADFLOW_DAGSTER_DATABASE_URL",
                "DAGSTER_HOME"}
    for name in ("migrate", "ingest-api", "reports-api", "agent", "dagster-webserver", "dagster-daemon"):
        assert required <= set(services[name]["environment"]), name
    assert "LEADFLOW_REPORTS_JWT_SECRET" in services["reports-api"]["environment"]


def test_every_leadflow_variable_in_compose_is_one_the_code_reads() -> None:
    for service in ("ingest-api", "reports-api", "agent", "dagster-daemon"):
        env = compose()["services"][service]["environment"]
        named = {k for k in env if k.startswith("LEADFLOW_")}
        assert named <= env_vars_read_by_the_code(), service


def test_bootstrap_servers_point_at_the_kafka_listener() -> None:
    services = compose()["services"]
    bootstrap = services["ingest-api"]["environment"]["LEADFLOW_KAFKA_BOOTSTRAP_SERVERS"]
    assert f"PLAINTEXT://{bootstrap}" in services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]


def test_dagster_processes_load_the_workspace_and_share_the_instance_config() -> None:
    services = compose()["services"]
    assert "workspace.yaml" in services["dagster-webserver"]["command"]
    assert "workspace.yaml" in services["dagster-daemon"]["command"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "leadflow/services/dagster.yaml" in dockerfile
    instance = yaml.safe_load((ROOT / "leadflow/services/dagster.yaml").read_text())
    assert instance["storage"]["postgres"]["postgres_url"]["env"] == "LEADFLOW_DAGSTER_DATABASE_URL"


def test_no_secret_is_written_into_compose() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    assert "${LEADFLOW_POSTGRES_PASSWORD:?" in text
    assert not re.search(r"PASSWORD:\s*['\"]?\w", text.replace("${LEADFLOW_POSTGRES_PASSWORD", ""))


def test_workspace_loads_the_definitions_module() -> None:
    workspace = yaml.safe_load((ROOT / "workspace.yaml").read_text())
    [location] = workspace["load_from"]
    assert location["python_module"] == {"module_name": "pipelines.definitions", "attribute": "defs",
                                         "location_name": "leadflow"}


PUBLISHED = {"ingest-api", "reports-api"}  # the services with a login or a signature of their own
FIRST_PARTY = {"leadflow", "ingest_api", "reports_api", "sensors", "assets", "pipelines"}


def interpolated(value: str) -> str:
    """Compose's `${VAR:-default}` as its default and `${VAR:?message}` as a stand-in value, as compose would
    with nothing set."""
    return re.sub(r"\$\{[A-Z0-9_]+(?::?([-?]))([^}]*)\}", lambda m: m.group(2) if m.group(1) == "-" else "set",
                  value)


def test_only_the_authenticated_apis_are_published_and_the_dagster_ui_is_not() -> None:
    services = compose()["services"]
    assert {name for name, service in services.items() if service.get("ports")} == PUBLISHED
    webserver = services["dagster-webserver"]
    # Reachable inside the compose network (for an authenticating proxy there), not on the host.
    assert "ports" not in webserver and webserver["expose"] == ["3000"]
    assert webserver["command"][webserver["command"].index("-p") + 1] == "3000"
    assert "3000" not in str([service.get("ports") for service in services.values()])


def test_the_reports_api_in_compose_sets_a_secure_cookie_and_trusts_only_configured_proxies() -> None:
    from leadflow.config import Settings
    from reports_api.security import cookie_secure

    service = compose()["services"]["reports-api"]
    assert "--host" not in service["command"]  # where it listens is the setting the cookie rule reads
    env = {name: interpolated(str(value)) for name, value in service["environment"].items()}
    settings = Settings.from_environment(env)
    assert settings.reports_host == "0.0.0.0" and cookie_secure(settings)
    assert settings.trusted_proxies == ""


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def copied_by_the_image() -> set[str]:
    """The repository's top-level files and folders that the Dockerfile copies into the image."""
    copied: set[str] = set()
    for instruction, arguments in dockerfile_instructions():
        if instruction == "COPY":
            *sources, _destination = arguments.split()
            copied |= {source.rstrip("/") for source in sources}
    return copied


def test_the_image_runs_as_an_unprivileged_user() -> None:
    instructions = dockerfile_instructions()
    users = [(i, arguments.strip()) for i, (instruction, arguments) in enumerate(instructions) if instruction == "USER"]
    assert users, "the Dockerfile sets no USER: every service would run as root"
    last, user = users[-1]
    assert user.split(":")[0] not in {"root", "0"}
    # The user exists (created in the image) and nothing runs as root after the switch.
    assert any(instruction == "RUN" and "useradd" in arguments and user in arguments
               for instruction, arguments in instructions[:last])
    assert not any(instruction == "RUN" for instruction, _ in instructions[last:])


def _module_file(module: str) -> Path | None:
    path = ROOT / Path(*module.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def _imported_by(tree: ast.AST) -> set[str]:
    """Every module the code under ``tree`` imports, at the top or inside a function (a command runs those too)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}  # `from pkg import module`
    return found


def first_party_closure(modules: set[str]) -> set[str]:
    """The first-party modules that importing ``modules`` loads, transitively."""
    seen: set[str] = set()
    todo = [m for m in modules if m.split(".")[0] in FIRST_PARTY]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        parts = module.split(".")
        for i in range(1, len(parts)):  # importing a.b.c runs a/__init__ and a/b/__init__ first
            todo.append(".".join(parts[:i]))
        path = _module_file(module)
        if path is not None:
            imported = _imported_by(ast.parse(path.read_text()))
            todo += [m for m in imported if m.split(".")[0] in FIRST_PARTY and _module_file(m)]
    return {m for m in seen if _module_file(m)}


def cli_handler_imports(subcommand: str) -> set[str]:
    """The modules the `leadflow <subcommand>` handler imports, and what leadflow.cli imports at its top
    (not the other handlers' imports: those run only for their own subcommands)."""
    tree = ast.parse((ROOT / "leadflow/cli.py").read_text())
    functions = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    handler = None
    for node in ast.walk(tree):
        # p = sub.add_parser("<subcommand>", ...) and then p.set_defaults(func=_handler)
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_parser" and node.args \
                and isinstance(node.args[0], ast.Constant) and node.args[0].value == subcommand:
            handler = ""
        elif handler == "" and isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "set_defaults":
            handler = next(k.value.id for k in node.keywords if k.arg == "func" and isinstance(k.value, ast.Name))
    assert handler, f"leadflow.cli has no subcommand {subcommand!r}"
    top: list[ast.stmt] = [node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)]
    return {"leadflow"} | _imported_by(ast.Module(body=top, type_ignores=[])) | _imported_by(functions[handler])


def needed_by(command: list[str]) -> set[str]:
    """The repository's top-level files and folders a compose command needs inside the image."""
    modules: set[str] = set()
    files = {arg for arg in command if (ROOT / arg).is_file()}
    if command[0] == "leadflow":
        assert 'leadflow = "leadflow.cli:main"' in (ROOT / "pyproject.toml").read_text()
        modules = cli_handler_imports(command[1])
    elif command[0] in ("dagster-webserver", "dagster-daemon"):
        workspace = yaml.safe_load((ROOT / command[command.index("-w") + 1]).read_text())
        modules = {location["python_module"]["module_name"] for location in workspace["load_from"]}
    else:
        raise AssertionError(f"unknown command {command[0]!r}: teach this test what it needs")
    closure = first_party_closure(modules)
    # Folders the code reaches by path rather than by import (the dbt project beside the assets).
    by_path = {name for module in closure
               for name in re.findall(r'"(dbt_project)"', (_module_file(module) or ROOT).read_text())}
    return files | {m.split(".")[0] for m in closure} | by_path


def test_every_compose_service_finds_in_the_image_what_its_command_needs() -> None:
    copied = copied_by_the_image()
    for name, service in compose()["services"].items():
        if service.get("image") != "leadflow:latest":
            continue
        missing = needed_by(service["command"]) - copied
        assert not missing, f"{name}: {service['command']} needs {sorted(missing)}, which the Dockerfile does not copy"
    # What the closure finds is what the services import: the reports API needs its own package.
    assert "reports_api" in needed_by(["leadflow", "reports-api"])
    assert {"pipelines", "assets", "sensors", "dbt_project", "workspace.yaml"} <= needed_by(
        ["dagster-daemon", "run", "-w", "workspace.yaml"])


# --- Kubernetes (deploy/k8s): no cluster here; validated against the API's schemas offline -------------

K8S = ROOT / "deploy" / "k8s"
K8S_VERSION = "1.33.0"  # the oldest minor the manifests promise to work on (pod-index labels: 1.28+)
WORKLOADS = ("Deployment", "StatefulSet", "Job")


def k8s_manifests() -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            found += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return found


def k8s_containers() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(workload name, its pod template, a container) for every container of every workload."""
    return [(doc["metadata"]["name"], doc["spec"]["template"], container)
            for _, doc in k8s_manifests() if doc["kind"] in WORKLOADS
            for container in doc["spec"]["template"]["spec"]["containers"]]


def test_every_kubernetes_manifest_is_valid_for_the_api() -> None:
    import kubernetes_validate

    assert k8s_manifests()
    for name, doc in k8s_manifests():
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            raise AssertionError(f"{name}: {doc['kind']} {doc['metadata']['name']}: {exc.message}") from exc
    # The validator itself catches what a person types wrong: a misspelled field, a wrong type.
    _, deployment = next((n, d) for n, d in k8s_manifests() if d["kind"] == "Deployment")
    for broken in ({**deployment, "spec": {**deployment["spec"], "replica": 2}},
                   {**deployment, "spec": {**deployment["spec"], "replicas": "two"}}):
        try:
            kubernetes_validate.validate(broken, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError:
            continue
        raise AssertionError("kubernetes-validate accepted a broken Deployment")


def test_the_kustomization_applies_every_manifest_into_one_namespace() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files
    namespaces = [doc for _, doc in k8s_manifests() if doc["kind"] == "Namespace"]
    assert [ns["metadata"]["name"] for ns in namespaces] == [kustomization["namespace"]]


def test_the_production_processes_run_on_kubernetes() -> None:
    commands = {" ".join(c["command"][:3]) for _, _, c in k8s_containers()}
    assert {"leadflow services up", "leadflow ingest-api --host", "leadflow reports-api", "leadflow agent run",
            "leadflow land --follow", "dagster-webserver -h 0.0.0.0", "dagster-daemon run -w"} <= commands


def test_every_leadflow_command_in_the_manifests_parses() -> None:
    from leadflow.cli import build_parser

    for name, _, container in k8s_containers():
        if container["command"][0] == "leadflow":
            build_parser().parse_args(container["command"][1:])  # exits (fails the test) on an unknown command
        else:
            assert container["command"][-2:] == ["-w", "workspace.yaml"], name


def test_every_container_has_resources_and_every_server_its_probes() -> None:
    for name, _, container in k8s_containers():
        resources = container["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]) and "memory" in resources["limits"], name
        ports = {p["name"] for p in container.get("ports", [])}
        if ports:
            for probe in ("readinessProbe", "livenessProbe"):
                assert container[probe]["httpGet"]["port"] in ports, (name, probe)
            # Liveness must not restart a pod because a dependency is down: that is readiness's job.
            if container["command"][0] == "leadflow":
                assert container["livenessProbe"]["httpGet"]["path"] == "/live", name
        assert container["image"] == "leadflow", name  # the kustomization's images entry names the registry


def test_every_variable_in_the_manifests_is_one_the_code_reads_and_none_is_a_secret() -> None:
    known = env_vars_read_by_the_code() | {"DAGSTER_HOME"}
    [config] = [doc for _, doc in k8s_manifests() if doc["kind"] == "ConfigMap"
                and doc["metadata"]["name"] == "leadflow-config"]
    named = set(config["data"])
    for _, _, container in k8s_containers():
        named |= {e["name"] for e in container.get("env", [])}
        sources = [s.get("configMapRef", s.get("secretRef"))["name"] for s in container["envFrom"]]
        assert sources == ["leadflow-config", "leadflow-secrets"]
    assert named <= known, named - known
    assert not [doc for _, doc in k8s_manifests() if doc["kind"] == "Secret"]  # created outside the repository
    secret_like = re.compile(r"PASSWORD|SECRET|TOKEN|DATABASE_URL|API_KEY")
    assert not {n for n in named if secret_like.search(n)}


def test_the_agent_pods_share_the_partitions_by_their_index() -> None:
    [agent] = [doc for _, doc in k8s_manifests() if doc["kind"] == "StatefulSet"]
    env = {e["name"]: e for e in agent["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["LEADFLOW_AGENT_MEMBERS"]["value"] == str(agent["spec"]["replicas"])
    assert env["LEADFLOW_AGENT_MEMBER"]["valueFrom"]["fieldRef"]["fieldPath"] == \
        "metadata.labels['apps.kubernetes.io/pod-index']"


def test_every_service_selects_pods_that_exist() -> None:
    labels = [template["metadata"]["labels"] for _, template, _ in k8s_containers()]
    for _, doc in k8s_manifests():
        if doc["kind"] == "Service" and doc["spec"].get("type") != "ExternalName":
            selector = doc["spec"]["selector"].items()
            assert any(selector <= pod.items() for pod in labels), doc["metadata"]["name"]


def test_dagster_runs_launch_as_kubernetes_jobs_with_the_kustomized_image() -> None:
    from dagster._config import process_config
    from dagster_k8s.launcher import K8sRunLauncher

    [instance_map] = [doc for _, doc in k8s_manifests() if doc["kind"] == "ConfigMap"
                      and doc["metadata"]["name"] == "dagster-instance"]
    instance = yaml.safe_load(instance_map["data"]["dagster.yaml"])
    # The same storage as every other install; the launcher's config is valid for the pinned dagster-k8s.
    assert instance["storage"] == yaml.safe_load((ROOT / "leadflow/services/dagster.yaml").read_text())["storage"]
    launcher = instance["run_launcher"]
    assert (launcher["module"], launcher["class"]) == ("dagster_k8s", "K8sRunLauncher")
    checked = process_config(K8sRunLauncher.config_type(), launcher["config"])
    assert checked.success, [error.message for error in checked.errors or []]
    config = launcher["config"]
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    [image] = kustomization["images"]
    assert config["job_image"] == f"{image['newName']}:{image['newTag']}"
    assert config["job_namespace"] == kustomization["namespace"]
    assert config["instance_config_map"] == "dagster-instance"
    assert config["env_config_maps"] == ["leadflow-config"] and config["env_secrets"] == ["leadflow-secrets"]
    # The webserver and the daemon read this instance and may launch and watch the Jobs.
    accounts = {doc["metadata"]["name"] for _, doc in k8s_manifests() if doc["kind"] == "ServiceAccount"}
    assert config["service_account_name"] in accounts
    [binding] = [doc for _, doc in k8s_manifests() if doc["kind"] == "RoleBinding"]
    [role] = [doc for _, doc in k8s_manifests() if doc["kind"] == "Role" and doc["metadata"]["name"] ==
              binding["roleRef"]["name"]]
    assert any("batch" in rule["apiGroups"] and "jobs" in rule["resources"] and "create" in rule["verbs"]
               for rule in role["rules"])
    for name, template, container in k8s_containers():
        if container["command"][0].startswith("dagster-"):
            assert template["spec"]["serviceAccountName"] in {s["name"] for s in binding["subjects"]}, name
            [mount] = container["volumeMounts"]
            [volume] = [v for v in template["spec"]["volumes"] if v["name"] == mount["name"]]
            assert volume["configMap"]["name"] == "dagster-instance", name
            assert mount["mountPath"] == "/opt/dagster/home/dagster.yaml" and mount["subPath"] == "dagster.yaml"
    # The image carries dagster-k8s: the Dockerfile installs the `k8s` extra.
    assert "'.[k8s]'" in (ROOT / "Dockerfile").read_text()
