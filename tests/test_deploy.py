"""The deployment files in deploy/, checked offline: nothing here builds an image or starts a service.

- Kubernetes manifests validate against the Kubernetes JSON schemas (kubernetes-validate, strict);
  the Compose file against the Compose Specification's schema (as vendored by check-jsonschema).
- Every ``COURSESTREAM_*`` name under deploy/ is a setting, and every value given to one is
  accepted by ``Settings`` / ``EncoderSettings``.
- Ports, paths and names agree across Dockerfiles, Compose, Prometheus, Grafana and Kubernetes.
- Every PromQL expression of the Grafana dashboard parses and uses only metrics (and labels)
  that the worker and the encoder export, read from their Prometheus registries.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import prometheus_client
import promql_parser
import pytest
import yaml
from check_jsonschema.builtin_schemas import get_builtin_schema

import streams.metrics  # noqa: F401  (registers the worker's metrics in the default registry)
from encoders.service import _Metrics, _State
from encoders.settings import EncoderSettings
from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
DOCKER, COMPOSE, K8S = DEPLOY / "docker", DEPLOY / "compose", DEPLOY / "k8s"
COMPOSE_FILE = COMPOSE / "docker-compose.yml"
#: A Kubernetes release whose schemas kubernetes-validate bundles.
K8S_VERSION = "1.34"

SETTINGS = {f"COURSESTREAM_{name.upper()}" for name in Settings.model_fields if name != "encoder"}
ENCODER_SETTINGS = {f"COURSESTREAM_ENCODER_{name.upper()}" for name in EncoderSettings.model_fields}
WORKER_PORT = Settings.model_fields["web_port"].default
ENCODER_PORT = EncoderSettings.model_fields["port"].default


def load_yaml_documents(path: Path) -> list[dict]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


def validate_settings(env: dict[str, str]) -> tuple[Settings, EncoderSettings]:
    """Both settings objects as these variables make them; ValidationError if a value is refused."""
    patch = pytest.MonkeyPatch()
    try:
        for name in [name for name in os.environ if name.startswith("COURSESTREAM_")]:
            patch.delenv(name)
        for name, value in env.items():
            patch.setenv(name, str(value))
        return Settings(_env_file=None), EncoderSettings()
    finally:
        patch.undo()


# ---------------------------------------------------------------------------------------------
# Names


def test_every_coursestream_variable_under_deploy_is_a_setting() -> None:
    used = {}
    for path in DEPLOY.rglob("*"):
        if path.is_file():
            for name in re.findall(r"\bCOURSESTREAM_[A-Z0-9_]*[A-Z0-9]\b", path.read_text()):
                used.setdefault(name, path.relative_to(ROOT))
    assert used, "no COURSESTREAM_* names found under deploy/"
    unknown = {name: str(path) for name, path in used.items() if name not in SETTINGS | ENCODER_SETTINGS}
    assert not unknown, f"not settings of streams.settings.Settings or encoders.settings.EncoderSettings: {unknown}"


# ---------------------------------------------------------------------------------------------
# Dockerfiles


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    logical, current = [], ""
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#"):
            continue
        current += line.rstrip()
        if current.endswith("\\"):
            current = current[:-1] + " "
            continue
        if current.strip():
            instruction, _, arguments = current.strip().partition(" ")
            logical.append((instruction.upper(), arguments.strip()))
        current = ""
    return logical


def dockerfile_env(instructions: list[tuple[str, str]]) -> dict[str, str]:
    env = {}
    for instruction, arguments in instructions:
        if instruction == "ENV":
            env.update(item.split("=", 1) for item in shlex.split(arguments))
    return env


def dockerfile_arg(instructions: list[tuple[str, str]], name: str) -> str:
    (value,) = [a.split("=", 1)[1] for i, a in instructions if i == "ARG" and a.startswith(f"{name}=")]
    return value


#: What each image runs, the setting that moves its port, and the endpoint its HEALTHCHECK asks.
DOCKERFILES = {
    "worker.Dockerfile": ("worker", "COURSESTREAM_WEB_PORT", WORKER_PORT, "/healthz"),
    "encoder.Dockerfile": ("encoder", "COURSESTREAM_ENCODER_PORT", ENCODER_PORT, "/readyz"),
}


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile(name: str) -> None:
    command, port_variable, port, health = DOCKERFILES[name]
    instructions = dockerfile_instructions(DOCKER / name)
    kinds = [instruction for instruction, _ in instructions]
    by_kind = {instruction: arguments for instruction, arguments in instructions}  # the last of each

    if command == "worker":
        assert by_kind["FROM"].startswith("python:3.11-")
    else:  # a CUDA base that already holds Python 3.11 and a torch in the project's range
        assert re.fullmatch(r"pytorch/pytorch:2\.\d+\.\d+-cuda\d+\.\d+-cudnn\d+-runtime", by_kind["FROM"])
    # What it copies exists in the build context (the repository root).
    for instruction, arguments in instructions:
        if instruction == "COPY":
            *sources, _ = arguments.split()
            for source in sources:
                assert (ROOT / source).exists(), f"{name}: COPY {source}: not in the repository"
    # The worker's torch is the Makefile's pin, installed before the project.
    project_step = next(n for n, (i, a) in enumerate(instructions) if i == "RUN" and "pip install /src" in a)
    if command == "worker":
        makefile_torch = re.search(r"^TORCH \?= torch==(\S+)$", (ROOT / "Makefile").read_text(), re.M).group(1)
        assert dockerfile_arg(instructions, "TORCH_VERSION") == makefile_torch
        torch_step = next(n for n, (i, a) in enumerate(instructions) if i == "RUN" and "torch==" in a)
        assert torch_step < project_step
    # Non-root, serving the settings' port, with a health check on the right endpoint.
    assert by_kind["USER"] not in ("root", "0") and kinds.index("USER") < kinds.index("ENTRYPOINT")
    assert by_kind["EXPOSE"] == str(port)
    healthcheck = by_kind["HEALTHCHECK"]
    assert f"127.0.0.1:%s{health}" in healthcheck and f"os.environ.get('{port_variable}', '{port}')" in healthcheck
    assert json.loads(by_kind["ENTRYPOINT"]) == ["coursestream"] and json.loads(by_kind["CMD"]) == [command]
    # Its settings are accepted, and it serves beyond the container.
    settings, encoder = validate_settings(dockerfile_env(instructions))
    if command == "worker":
        assert settings.web_host == "0.0.0.0" and settings.vector_store == "qdrant"
        assert str(settings.data_dir) in by_kind["VOLUME"]
    else:
        assert encoder.host == "0.0.0.0" and encoder.port == ENCODER_PORT and encoder.device == "cuda"


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether Docker leaves ``path`` out of the build context (the last matching pattern wins)."""
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        parts = path.split("/")
        if any(fnmatch.fnmatch("/".join(parts[:n]), pattern) for n in range(1, len(parts) + 1)):
            ignored = not negated
    return ignored


def test_root_dockerignore_keeps_the_context_small() -> None:
    """The images are built with the repository root as context: .venv and data must stay out."""
    dockerignore = ROOT / ".dockerignore"
    assert dockerignore.is_file(), "add a .dockerignore at the repository root (see deploy/README.md)"
    lines = [line.strip() for line in dockerignore.read_text().splitlines()]
    patterns = [line for line in lines if line and not line.startswith("#")]
    for path in (".venv/bin/python", ".git/HEAD"):
        assert dockerignored(path, patterns), f"{path} would be sent to the Docker daemon"
    for name in DOCKERFILES:
        for instruction, arguments in dockerfile_instructions(DOCKER / name):
            if instruction == "COPY":
                for source in arguments.split()[:-1]:
                    assert not dockerignored(source, patterns), f"{name} copies {source}: .dockerignore leaves it out"


# ---------------------------------------------------------------------------------------------
# Compose


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def interpolate(value: object) -> str:
    """A Compose value with each ``${VAR:-default}`` as its default (no variable set)."""
    return re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", str(value))


def service_env(service: dict) -> dict[str, str]:
    environment = service.get("environment", {})
    if isinstance(environment, list):
        environment = dict(item.partition("=")[::2] for item in environment)
    # A variable without a value passes the host's through, or stays unset: unset here.
    return {name: interpolate(value) for name, value in environment.items() if value is not None}


def test_compose_file_follows_the_compose_specification(compose: dict) -> None:
    schema = get_builtin_schema("vendor.compose-spec")
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(compose)]
    assert not errors


def test_compose_references_resolve(compose: dict) -> None:
    services = compose["services"]
    for name, service in services.items():
        for dependency in service.get("depends_on", []):
            assert dependency in services, f"{name} depends on unknown service {dependency}"
        if "build" in service:
            context = (COMPOSE / service["build"]["context"]).resolve()
            assert (context / service["build"]["dockerfile"]).is_file()
            assert context == ROOT
        for volume in service.get("volumes", []):
            source, _, _ = volume.partition(":")
            if source.startswith("."):
                assert (COMPOSE / source).exists(), f"{name} mounts missing {source}"
            elif ":" in volume:
                assert source in compose["volumes"], f"{name} mounts undeclared volume {source}"


def test_compose_services_are_configured_for_production(compose: dict) -> None:
    services = compose["services"]
    worker, encoder = services["worker"], services["encoder"]
    settings, _ = validate_settings(service_env(worker))
    # A real broker and a Qdrant server, both services of this file.
    assert settings.kafka_bootstrap_servers == "kafka:9092" and not settings.kafka_embedded
    assert settings.vector_store == "qdrant" and urlsplit(settings.qdrant_url).hostname == "qdrant"
    assert settings.encoder_url == f"http://encoder:{ENCODER_PORT}"
    # The partition count given to the workers is the one the init step creates topics with.
    topics = services["topics"]
    assert validate_settings(service_env(topics))[0].partitions == settings.partitions
    python, flag, code = topics["entrypoint"]
    assert (python, flag, topics["image"]) == ("python", "-c", worker["image"])
    compile(code, "topics", "exec")
    assert "from streams.topics import ensure_topics" in code and "ensure_topics(Settings())" in code
    assert worker["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    # Per-replica state: an anonymous volume at the image's data dir, never a named (shared) one.
    image_env = dockerfile_env(dockerfile_instructions(DOCKER / "worker.Dockerfile"))
    assert worker["volumes"] == [image_env["COURSESTREAM_DATA_DIR"]]
    # The encoder gets an NVIDIA GPU.
    (device,) = encoder["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    # Kafka runs KRaft, one node, with a health check the init step waits for.
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "healthcheck" in kafka and services["qdrant"]["image"].startswith("qdrant/qdrant:")


# ---------------------------------------------------------------------------------------------
# Prometheus and Grafana (Compose)


def test_prometheus_scrapes_the_services_on_their_ports(compose: dict) -> None:
    config = yaml.safe_load((COMPOSE / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert len(jobs) == len(config["scrape_configs"])
    worker = validate_settings(service_env(compose["services"]["worker"]))[0]
    encoder = validate_settings(service_env(compose["services"]["encoder"]))[1]
    expected = {"worker": worker.web_port, "encoder": encoder.port, "qdrant": urlsplit(worker.qdrant_url).port}
    # The workers are found by DNS, so that every replica is scraped.
    (dns,) = jobs["worker"]["dns_sd_configs"]
    assert dns["names"] == ["worker"] and dns["type"] == "A" and dns["port"] == expected["worker"]
    for job in ("encoder", "qdrant"):
        (static,) = jobs[job]["static_configs"]
        assert static["targets"] == [f"{job}:{expected[job]}"]
    for job in jobs.values():
        assert job.get("metrics_path", "/metrics") == "/metrics"
        for static in job.get("static_configs", []):
            assert all(target.partition(":")[0] in compose["services"] for target in static["targets"])


def test_grafana_provisioning_points_at_prometheus_and_the_dashboards(compose: dict) -> None:
    provisioning = COMPOSE / "grafana" / "provisioning"
    (datasource,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert datasource["type"] == "prometheus" and datasource["url"] == "http://prometheus:9090"
    assert "127.0.0.1:9090:9090" in compose["services"]["prometheus"]["ports"]
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "coursestream.yml").read_text())["providers"]
    mounts = dict(volume.split(":")[:2] for volume in compose["services"]["grafana"]["volumes"])
    assert mounts["./grafana/dashboards"] == provider["options"]["path"]
    assert list((COMPOSE / "grafana" / "dashboards").glob("*.json"))


def exported_metrics() -> dict[str, set[str]]:
    """Every sample name the worker and the encoder export, with its label names."""
    exported = {}
    for registry in (prometheus_client.REGISTRY, _Metrics(_State()).registry):
        # _names_to_collectors: sample names (name_total, name_bucket, ...) of every collector,
        # including labelled ones that have no sample yet, which collect() would not show.
        for sample, collector in registry._names_to_collectors.items():
            if sample.startswith("coursestream_"):
                exported[sample] = set(collector._labelnames) | ({"le"} if sample.endswith("_bucket") else set())
    return exported


DASHBOARD = COMPOSE / "grafana" / "dashboards" / "coursestream.json"
#: Grafana's interval variables, replaced by a duration before PromQL is parsed.
GRAFANA_INTERVALS = re.compile(r"\$\{?(__rate_interval|__interval|__range)\b\}?")
#: Labels Prometheus attaches to every scraped series.
TARGET_LABELS = {"job", "instance"}


def test_grafana_dashboard_queries_use_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exported = exported_metrics()
    variables = {variable["name"] for variable in dashboard["templating"]["list"]}
    panels = dashboard["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels)
    used = set()
    for panel in panels:
        assert panel["datasource"]["uid"].strip("${}") in variables
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            expression = promql_parser.parse(GRAFANA_INTERVALS.sub("5m", target["expr"]))
            selectors: list[promql_parser.VectorSelector] = []
            aggregations: list[promql_parser.AggregateExpr] = []

            def visit(node: object) -> None:
                if isinstance(node, promql_parser.VectorSelector):
                    selectors.append(node)
                elif isinstance(node, promql_parser.AggregateExpr):
                    aggregations.append(node)

            promql_parser.walk(expression, visit)
            labels = set(TARGET_LABELS)
            for selector in selectors:
                assert selector.name in exported, f"{panel['title']}: no metric {selector.name}"
                labels |= exported[selector.name]
                for matcher in selector.matchers.matchers:
                    assert matcher.name in labels, f"{panel['title']}: {selector.name} has no label {matcher.name}"
                used.add(selector.name)
            for aggregation in aggregations:
                if aggregation.modifier is not None:
                    assert set(aggregation.modifier.labels) <= labels, f"{panel['title']}: {aggregation.modifier}"
            legend_labels = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")))
            assert legend_labels <= labels, f"{panel['title']}: legend {target['legendFormat']}"
    # The dashboard covers the pipeline end to end.
    for metric in (
        "coursestream_events_total",
        "coursestream_dead_letters_total",
        "coursestream_event_to_recommendation_seconds_bucket",
        "coursestream_consumer_lag",
        "coursestream_vector_store_seconds_bucket",
        "coursestream_encoder_calls_total",
        "coursestream_encoder_batch_size_sum",
        "coursestream_encoder_queue_depth",
    ):
        assert metric in used, f"the dashboard shows no {metric}"


# ---------------------------------------------------------------------------------------------
# Kubernetes


@pytest.fixture(scope="module")
def manifests() -> dict[tuple[str, str], dict]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    on_disk = {path.name for path in K8S.glob("*.yaml")} - {"kustomization.yaml", "qdrant-values.yaml"}
    assert listed == on_disk, "kustomization.yaml must list every manifest in deploy/k8s"
    found = {}
    for name in kustomization["resources"]:
        for document in load_yaml_documents(K8S / name):
            found[(document["kind"], document["metadata"]["name"])] = document
    return found


#: A resource quantity, as Kubernetes parses it (the schemas only say "string or integer").
QUANTITY = re.compile(r"^[+-]?[0-9.]+([eEinumkKMGTP]*[-+]?[0-9]*)$")


def resource_quantities(node: object) -> list[str]:
    """Every value under a ``resources: {requests, limits}`` in a manifest."""
    if isinstance(node, list):
        return [quantity for item in node for quantity in resource_quantities(item)]
    if not isinstance(node, dict):
        return []
    found = [str(v) for key in ("requests", "limits") for v in node.get("resources", {}).get(key, {}).values()]
    return found + [quantity for value in node.values() for quantity in resource_quantities(value)]


def test_kubernetes_manifests_validate(manifests: dict[tuple[str, str], dict]) -> None:
    for (kind, name), document in manifests.items():
        try:
            kubernetes_validate.validate(document, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(map(str, error.path))
            pytest.fail(f"{kind}/{name}: {path}: {error.message}")
        for quantity in resource_quantities(document):
            assert QUANTITY.match(quantity), f"{kind}/{name}: {quantity!r} is not a resource quantity"


def pod_env(container: dict, manifests: dict[tuple[str, str], dict]) -> dict[str, str]:
    """The container's environment as Kubernetes gives it: envFrom, then env (secrets resolved)."""
    env = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(manifests[("ConfigMap", source["configMapRef"]["name"])]["data"])
    for variable in container.get("env", []):
        if "value" in variable:
            env[variable["name"]] = variable["value"]
        elif "secretKeyRef" in variable["valueFrom"]:
            reference = variable["valueFrom"]["secretKeyRef"]
            env[variable["name"]] = manifests[("Secret", reference["name"])]["stringData"][reference["key"]]
    return env


def only_container(workload: dict) -> dict:
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    return container


def probes(container: dict) -> dict[str, tuple[str, int]]:
    """Each HTTP probe's path and port number (a named port resolved)."""
    named = {port["name"]: port["containerPort"] for port in container["ports"]}
    found = {}
    for probe in ("livenessProbe", "readinessProbe"):
        path, port = container[probe]["httpGet"]["path"], container[probe]["httpGet"]["port"]
        found[probe] = (path, named.get(port, port))
    return found


def test_worker_statefulset(manifests: dict[tuple[str, str], dict]) -> None:
    workload = manifests[("StatefulSet", "coursestream-worker")]
    service = manifests[("Service", workload["spec"]["serviceName"])]
    container = only_container(workload)
    settings, _ = validate_settings(pod_env(container, manifests))
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"].items() <= workload["spec"]["template"]["metadata"]["labels"].items()
    # Probes, scrapes and the Service on the worker's web port; the canonical URL names this pod
    # in the headless Service.
    port = settings.web_port
    assert [service_port["port"] for service_port in service["spec"]["ports"]] == [port]
    assert probes(container) == {"livenessProbe": ("/healthz", port), "readinessProbe": ("/readyz", port)}
    assert workload["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == str(port)
    assert settings.web_host == "0.0.0.0"
    assert settings.web_canonical_url == f"http://$(POD_NAME).{service['metadata']['name']}.$(POD_NAMESPACE).svc:{port}"
    declared = [variable["name"] for variable in container["env"]]
    assert declared.index("POD_NAME") < declared.index("COURSESTREAM_WEB_CANONICAL_URL")
    assert declared.index("POD_NAMESPACE") < declared.index("COURSESTREAM_WEB_CANONICAL_URL")
    # State on the claim template's volume, at the data dir.
    (claim,) = workload["spec"]["volumeClaimTemplates"]
    (mount,) = container["volumeMounts"]
    assert mount["name"] == claim["metadata"]["name"] and Path(mount["mountPath"]) == settings.data_dir
    # Production back ends, and no more workers than partitions to share.
    assert settings.vector_store == "qdrant" and settings.qdrant_url and not settings.kafka_embedded
    assert settings.kafka_security_protocol.startswith("SASL") and settings.kafka_sasl_password is not None
    assert settings.encoder.token is not None
    assert workload["spec"]["replicas"] <= settings.partitions


def test_encoder_deployment(manifests: dict[tuple[str, str], dict]) -> None:
    workload = manifests[("Deployment", "coursestream-encoder")]
    container = only_container(workload)
    _, encoder = validate_settings(pod_env(container, manifests))
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    port = encoder.port
    assert probes(container) == {"livenessProbe": ("/healthz", port), "readinessProbe": ("/readyz", port)}
    assert workload["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == str(encoder.port)
    assert encoder.host == "0.0.0.0" and encoder.token is not None
    # The workers' encoder URL is this Deployment's Service.
    worker_container = only_container(manifests[("StatefulSet", "coursestream-worker")])
    url = urlsplit(validate_settings(pod_env(worker_container, manifests))[0].encoder_url)
    service = manifests[("Service", url.hostname)]
    assert service["spec"]["selector"].items() <= workload["spec"]["template"]["metadata"]["labels"].items()
    (port,) = service["spec"]["ports"]
    assert port["port"] == url.port and port["targetPort"] in (encoder.port, "http")


def test_qdrant_comes_from_its_helm_chart(manifests: dict[tuple[str, str], dict], compose: dict) -> None:
    values = yaml.safe_load((K8S / "qdrant-values.yaml").read_text())
    # The same Qdrant release as the Compose stack.
    assert f"qdrant/qdrant:{values['image']['tag']}" == compose["services"]["qdrant"]["image"]
    # The release "qdrant" serves http on 6333; the README says how to install it.
    url = urlsplit(manifests[("ConfigMap", "coursestream-config")]["data"]["COURSESTREAM_QDRANT_URL"])
    assert (url.hostname, url.port) == ("qdrant", 6333)
    assert "helm upgrade --install qdrant qdrant/qdrant" in (DEPLOY / "README.md").read_text()
