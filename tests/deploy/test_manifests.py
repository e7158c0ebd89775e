"""Compose files and Kubernetes manifests validate offline against their published schemas."""

import copy
import json
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from pulmogate.common.cli import main
from pulmogate.common.settings import Settings
from tests.deploy.manifests import (
    DEPLOY,
    OVERLAYS,
    SERVICES,
    kustomize_build,
    kustomize_command,
    load_compose,
    merge_compose,
)

# Oldest Kubernetes minor the manifests promise to work on, and the newest the schemas know.
K8S_VERSIONS = ["1.29.0", kubernetes_validate.latest_version()]
KEDA_SCHEMAS = yaml.safe_load(
    (Path(__file__).parent / "schemas" / "keda-v1alpha1.yaml").read_text()
)

needs_kustomize = pytest.mark.skipif(
    kustomize_command() is None, reason="needs kustomize or kubectl (kubectl kustomize) on PATH"
)


def compose_schema() -> dict[str, Any]:
    """The compose-spec JSON schema as vendored in the check-jsonschema package."""
    text = (
        resources.files("check_jsonschema.builtin_schemas.vendor")
        .joinpath("compose-spec.json")
        .read_text()
    )
    return json.loads(text)


def compose_errors(document: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft202012Validator(compose_schema())
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(document)
    ]


def compose_documents() -> dict[str, dict[str, Any]]:
    base, cpu = load_compose("compose.yaml"), load_compose("compose.cpu.yaml")
    return {
        "compose.yaml": base,
        "compose.cpu.yaml": cpu,
        "compose.yaml+compose.cpu.yaml": merge_compose(base, cpu),
    }


@pytest.mark.parametrize("name", list(compose_documents()))
def test_compose_files_match_the_compose_spec_schema(name: str) -> None:
    assert compose_errors(compose_documents()[name]) == []


def test_compose_schema_check_rejects_a_misspelt_key() -> None:
    broken = copy.deepcopy(load_compose("compose.yaml"))
    broken["services"]["receiver"]["restart_policy"] = "always"
    assert any("restart_policy" in error for error in compose_errors(broken))


def test_compose_runs_every_service_and_the_cpu_override_drops_the_gpu() -> None:
    docs = compose_documents()
    services = docs["compose.yaml"]["services"]
    assert set(SERVICES) | {"postgres", "rabbitmq", "migrate"} <= set(services)
    gpu = services["inference"]
    assert gpu["build"]["target"] == "gpu"
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    cpu = docs["compose.yaml+compose.cpu.yaml"]["services"]["inference"]
    assert cpu["build"] == {**gpu["build"], "target": "cpu"}
    assert "devices" not in cpu["deploy"]["resources"]["reservations"]
    assert cpu["environment"]["PULMOGATE_EXECUTION_PROVIDER"] == "cpu"
    # Every pulmogate service shares the one storage volume and waits for the migration.
    for name in SERVICES:
        service = services[name]
        assert "pulmogate-data:/data" in service["volumes"], name
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def _cli_accepts(args: list[str]) -> bool:
    try:
        main([*args, "--help"])
    except SystemExit as exit_:
        return exit_.code in (0, None)
    return False  # --help always exits


def container_commands() -> list[tuple[str, list[str]]]:
    """Every `pulmogate` argument list the compose services and k8s base containers run."""
    commands = [
        (f"compose {name}", service["command"])
        for name, service in load_compose("compose.yaml")["services"].items()
        if "command" in service and service.get("image", "").startswith("pulmogate/")
    ]
    for path in sorted((DEPLOY / "k8s" / "base").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") in {"Deployment", "Job"}:
                for container in doc["spec"]["template"]["spec"]["containers"]:
                    commands.append((f"{path.name} {container['name']}", container["args"]))
    return commands


@pytest.mark.parametrize(("where", "args"), container_commands(), ids=lambda v: str(v))
def test_container_commands_exist_in_the_pulmogate_cli(where: str, args: list[str]) -> None:
    assert _cli_accepts(args), f"{where}: `pulmogate {' '.join(args)}` is not a pulmogate command"


def test_cli_check_rejects_an_unknown_command() -> None:
    assert not _cli_accepts(["migrate"])


def _settings_env_names() -> set[str]:
    return {f"PULMOGATE_{name.upper()}" for name in Settings.model_fields}


def test_every_pulmogate_variable_set_in_deploy_is_a_setting() -> None:
    known = _settings_env_names()
    used: dict[str, set[str]] = {}
    for line in (DEPLOY / ".env.example").read_text().splitlines():
        key = line.lstrip("# ").split("=", 1)[0]
        if key.startswith("PULMOGATE_") and "=" in line:
            used.setdefault(".env.example", set()).add(key)
    for name, service in compose_documents()["compose.yaml+compose.cpu.yaml"]["services"].items():
        used[f"compose {name}"] = {
            k for k in service.get("environment", {}) if k.startswith("PULMOGATE_")
        }
    for overlay in OVERLAYS if kustomize_command() else []:
        for doc in kustomize_build(overlay):
            if doc["kind"] in {"ConfigMap", "Secret"}:
                data = doc.get("data", {}) | doc.get("stringData", {})
                used[f"{overlay} {doc['metadata']['name']}"] = {
                    k for k in data if k.startswith("PULMOGATE_")
                }
    # Compose-only knobs read by compose.yaml itself, not by the application.
    compose_only = {"PULMOGATE_VERSION", "PULMOGATE_API_PUBLISH", "PULMOGATE_DICOM_PUBLISH"}
    unknown = {
        where: keys - known - compose_only
        for where, keys in used.items()
        if keys - known - compose_only
    }
    assert unknown == {}


def _keda_errors(doc: dict[str, Any]) -> list[str]:
    schema = _closed(KEDA_SCHEMAS[doc["kind"]])
    validator = jsonschema.Draft7Validator(schema)
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)
    ]


def _closed(schema: Any) -> Any:
    """Strict structural schema: fields not in the CRD are errors (kubectl --validate=strict)."""
    if isinstance(schema, dict):
        closed = {key: _closed(value) for key, value in schema.items()}
        if "properties" in closed and "additionalProperties" not in closed:
            closed["additionalProperties"] = False
        return closed
    if isinstance(schema, list):
        return [_closed(item) for item in schema]
    return schema


def _k8s_errors(doc: dict[str, Any], version: str) -> list[str]:
    if doc["apiVersion"].startswith("keda.sh/"):
        return _keda_errors(doc)
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{'/'.join(map(str, exc.path))}: {exc.message}"]
    return []


@needs_kustomize
@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_manifests_match_kubernetes_and_keda_schemas(overlay: str, version: str) -> None:
    docs = kustomize_build(overlay)
    kinds = {doc["kind"] for doc in docs}
    assert {"Deployment", "Job", "ScaledObject", "TriggerAuthentication", "NetworkPolicy"} <= kinds
    errors = {f"{d['kind']}/{d['metadata']['name']}": _k8s_errors(d, version) for d in docs}
    assert {name: errs for name, errs in errors.items() if errs} == {}


@needs_kustomize
def test_schema_checks_reject_misspelt_fields() -> None:
    docs = {doc["kind"]: doc for doc in kustomize_build("gpu")}
    scaled = copy.deepcopy(docs["ScaledObject"])
    scaled["spec"]["maxReplicas"] = 8
    assert any("maxReplicas" in e for e in _keda_errors(scaled))
    job = copy.deepcopy(docs["Job"])
    job["spec"]["template"]["spec"]["containers"][0]["argz"] = ["db", "upgrade"]
    assert _k8s_errors(job, K8S_VERSIONS[0]) != []


def _by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


@needs_kustomize
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_references_resolve(overlay: str) -> None:
    """ConfigMaps, Secrets, PVCs and selectors named anywhere exist in the same build."""
    docs = kustomize_build(overlay)
    assert {doc["metadata"].get("namespace", "pulmogate") for doc in docs} == {"pulmogate"}
    configmaps, secrets = _by_kind(docs, "ConfigMap"), _by_kind(docs, "Secret")
    claims, deployments = _by_kind(docs, "PersistentVolumeClaim"), _by_kind(docs, "Deployment")
    pod_labels = [
        doc["spec"]["template"]["metadata"]["labels"]
        for doc in docs
        if doc["kind"] in {"Deployment", "Job"}
    ]

    def selects_a_pod(selector: dict[str, str]) -> bool:
        return any(selector.items() <= labels.items() for labels in pod_labels)

    for doc in docs:
        if doc["kind"] in {"Deployment", "Job"}:
            pod = doc["spec"]["template"]["spec"]
            for container in pod["containers"]:
                for source in container.get("envFrom", []):
                    if "configMapRef" in source:
                        assert source["configMapRef"]["name"] in configmaps
                    if "secretRef" in source:
                        assert source["secretRef"]["name"] in secrets
                assert ":" in container["image"], f"{container['image']} has no tag"
            for volume in pod.get("volumes", []):
                if "persistentVolumeClaim" in volume:
                    assert volume["persistentVolumeClaim"]["claimName"] in claims
        if doc["kind"] == "Deployment":
            assert (
                doc["spec"]["selector"]["matchLabels"].items()
                <= doc["spec"]["template"]["metadata"]["labels"].items()
            )
        if doc["kind"] in {"Service", "PodDisruptionBudget"}:
            selector = doc["spec"]["selector"]
            assert selects_a_pod(selector.get("matchLabels", selector)), doc["metadata"]["name"]
        if doc["kind"] == "NetworkPolicy" and doc["spec"]["podSelector"]:
            assert selects_a_pod(doc["spec"]["podSelector"]["matchLabels"]), doc["metadata"]["name"]
    assert {f"pulmogate-{name}" for name in SERVICES} <= set(deployments)
    assert all(claim["spec"]["accessModes"] == ["ReadWriteMany"] for claim in claims.values())


@needs_kustomize
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_keda_scales_inference_on_its_queue(overlay: str) -> None:
    from pulmogate.inference.service import QUEUE

    docs = kustomize_build(overlay)
    scaled = _by_kind(docs, "ScaledObject")["pulmogate-inference"]["spec"]
    assert scaled["scaleTargetRef"]["name"] in _by_kind(docs, "Deployment")
    (trigger,) = scaled["triggers"]
    assert trigger["type"] == "rabbitmq"
    assert trigger["metadata"]["queueName"] == QUEUE
    auth = _by_kind(docs, "TriggerAuthentication")[trigger["authenticationRef"]["name"]]
    for ref in auth["spec"]["secretTargetRef"]:
        assert ref["key"] in _by_kind(docs, "Secret")[ref["name"]]["stringData"]
    assert 1 <= scaled["minReplicaCount"] <= scaled["maxReplicaCount"]


@needs_kustomize
def test_gpu_overlay_gives_inference_one_gpu_and_cpu_overlay_none() -> None:
    def inference(overlay: str) -> dict[str, Any]:
        deployment = _by_kind(kustomize_build(overlay), "Deployment")["pulmogate-inference"]
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        return container

    gpu, cpu = inference("gpu"), inference("cpu")
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert {"name": "PULMOGATE_EXECUTION_PROVIDER", "value": "cuda"} in gpu["env"]
    assert "nvidia.com/gpu" not in json.dumps(cpu)
    assert cpu["image"].endswith("-cpu")
    assert {"name": "PULMOGATE_EXECUTION_PROVIDER", "value": "cpu"} in cpu["env"]


def _serves_metrics_on(service: str, settings: dict[str, Any]) -> str:
    """The port a service's process serves /metrics on, from its settings (api: its own port)."""
    if service == "api":
        return str(settings["PULMOGATE_API_PORT"])
    assert settings.get("PULMOGATE_METRICS_HOST") == "0.0.0.0", service
    port = str(settings["PULMOGATE_METRICS_PORT"])
    assert port != "0", f"{service}: metrics are off"
    return port


def test_compose_exposes_and_labels_the_port_each_service_serves_metrics_on() -> None:
    services = compose_documents()["compose.yaml+compose.cpu.yaml"]["services"]
    for name in SERVICES:
        service = services[name]
        port = _serves_metrics_on(name, service["environment"])
        labels = service["labels"]
        assert labels["prometheus.io/scrape"] == "true", name
        assert labels["prometheus.io/port"] == port, name
        assert labels["prometheus.io/path"] == "/metrics", name
        if name != "api":
            assert port in service["expose"], name


def _policy_admits(policies: list[dict[str, Any]], labels: dict[str, str], port: int) -> bool:
    for policy in policies:
        selector = policy["spec"]["podSelector"].get("matchLabels", {})
        if not selector.items() <= labels.items():
            continue
        for rule in policy["spec"].get("ingress", []):
            if any(p.get("port") == port for p in rule.get("ports", [])) or "ports" not in rule:
                if rule.get("from") and all("podSelector" in f for f in rule["from"]):
                    continue  # only other pulmogate pods: not Prometheus
                return True
    return False


@needs_kustomize
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_deployment_is_annotated_for_the_metrics_port_it_opens(overlay: str) -> None:
    docs = kustomize_build(overlay)
    (config,) = _by_kind(docs, "ConfigMap").values()
    policies = [doc for doc in docs if doc["kind"] == "NetworkPolicy"]
    for name in SERVICES:
        deployment = _by_kind(docs, "Deployment")[f"pulmogate-{name}"]
        template = deployment["spec"]["template"]
        annotations = template["metadata"]["annotations"]
        port = _serves_metrics_on(name, config["data"])
        assert annotations["prometheus.io/scrape"] == "true", name
        assert annotations["prometheus.io/port"] == port, name
        assert annotations["prometheus.io/path"] == "/metrics", name
        (container,) = template["spec"]["containers"]
        assert int(port) in [p["containerPort"] for p in container["ports"]], name
        assert _policy_admits(policies, template["metadata"]["labels"], int(port)), name
