"""The deployment files in deploy/, checked offline: nothing here builds an image or starts a service.

- Kubernetes manifests validate against the Kubernetes JSON schemas (kubernetes-validate, strict);
  the Compose file against the Compose Specification's schema (as vendored by check-jsonschema).
- Every ``COURSESTREAM_*`` name under deploy/ is a setting, and every value given to one is
  accepted by ``Settings`` / ``EncoderSettings``.
- Ports, paths and names agree across Dockerfiles, Compose, Prometheus, Grafana and Kubernetes.
- Every PromQL expression of the Grafana dashboard and of the alert rules (Compose's, and the
  Kubernetes PrometheusRule, equal to them) parses and uses only metrics (and labels) that the
  worker and the encoder export, read from their Prometheus registries; Prometheus loads the
  rules and sends to the stack's Alertmanager.
- Security: no secret is an environment variable or an example value anywhere under deploy/
  (secrets are files), nothing of ours runs as root or with a writable root file system or a
  service-account token, NetworkPolicies deny by default and let only the workers, Prometheus
  and the gateway reach the workers' port, Kafka speaks SASL over TLS, Qdrant needs its key,
  Grafana has no default password, the encoder has a media root and a host allow-list, the
  images install from a lock file with hashes, and every topic has a retention.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import json
import os
import re
import secrets
import shlex
import tempfile
import tomllib
from collections.abc import Iterable, Iterator
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
from encoders.credentials import SECRETS_DIR_VARIABLE
from encoders.service import _Metrics, _State
from encoders.settings import EncoderSettings
from streams.settings import Settings
from streams.topics import topic_configs, topic_names

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
DOCKER, COMPOSE, K8S = DEPLOY / "docker", DEPLOY / "compose", DEPLOY / "k8s"
COMPOSE_FILE = COMPOSE / "docker-compose.yml"
#: A Kubernetes release whose schemas kubernetes-validate bundles.
K8S_VERSION = "1.34"

SETTINGS = {f"COURSESTREAM_{name.upper()}" for name in Settings.model_fields if name != "encoder"} | {
    SECRETS_DIR_VARIABLE}
ENCODER_SETTINGS = {f"COURSESTREAM_ENCODER_{name.upper()}" for name in EncoderSettings.model_fields}
WORKER_PORT = Settings.model_fields["web_port"].default
ENCODER_PORT = EncoderSettings.model_fields["port"].default


#: Names of settings, variables and keys that hold secrets.
SECRET_NAME = re.compile(r"password|token|api_?key|secret", re.IGNORECASE)


def load_yaml_documents(path: Path) -> list[dict]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


def deploy_files() -> list[Path]:
    """Every file under deploy/ that is part of the repository (not generated secrets)."""
    return [path for path in sorted(DEPLOY.rglob("*"))
            if path.is_file() and "secrets" not in path.relative_to(DEPLOY).parts[:-1]]


def validate_settings(env: dict[str, str], secret_files: Iterable[str] = ()) -> tuple[Settings, EncoderSettings]:
    """Both settings objects as these variables make them, with a generated value in each of
    ``secret_files`` (in the secrets dir, as the deployment mounts them); ValidationError if a
    value is refused."""
    patch = pytest.MonkeyPatch()
    with tempfile.TemporaryDirectory() as folder:
        try:
            for name in [name for name in os.environ if name.startswith("COURSESTREAM_")]:
                patch.delenv(name)
            for name, value in env.items():
                patch.setenv(name, str(value))
            for name in secret_files:
                (Path(folder) / name).write_text(secrets.token_hex(32))
            if secret_files or SECRETS_DIR_VARIABLE in env:  # as mounted there
                patch.setenv(SECRETS_DIR_VARIABLE, folder)
            return Settings(_env_file=None), EncoderSettings()
        finally:
            patch.undo()


# ---------------------------------------------------------------------------------------------
# Names


def test_every_coursestream_variable_under_deploy_is_a_setting() -> None:
    used = {}
    for path in deploy_files():
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

    assert by_kind["FROM"].startswith("python:3.11-")
    # What it copies exists in the build context (the repository root).
    for instruction, arguments in instructions:
        if instruction == "COPY":
            *sources, _ = arguments.split()
            for source in sources:
                assert (ROOT / source).exists(), f"{name}: COPY {source}: not in the repository"
    # Dependencies from the lock file, with hashes; then the Makefile's torch; then the project
    # alone, with nothing resolved behind the lock's back.
    runs = [(n, arguments) for n, (instruction, arguments) in enumerate(instructions) if instruction == "RUN"]
    lock_step = next(n for n, a in runs if "-r /tmp/requirements.lock" in a)
    assert "--require-hashes" in instructions[lock_step][1] and "--no-deps" in instructions[lock_step][1]
    torch_step = next(n for n, a in runs if 'torch==${TORCH_VERSION}' in a)
    project_step = next(n for n, a in runs if "pip install" in a and "/src" in a.split())
    assert "--no-deps" in instructions[project_step][1] and "pip check" in instructions[project_step][1]
    assert lock_step < torch_step < project_step
    makefile_torch = re.search(r"^TORCH \?= torch==(\S+)$", (ROOT / "Makefile").read_text(), re.M).group(1)
    assert dockerfile_arg(instructions, "TORCH_VERSION") == makefile_torch
    if command == "worker":  # the CPU build
        assert "--index-url https://download.pytorch.org/whl/cpu" in instructions[torch_step][1]
    # Non-root, serving the settings' port, with a health check on the right endpoint.
    assert by_kind["USER"] not in ("root", "0") and kinds.index("USER") < kinds.index("ENTRYPOINT")
    assert by_kind["EXPOSE"] == str(port)
    healthcheck = by_kind["HEALTHCHECK"]
    assert f"127.0.0.1:%s{health}" in healthcheck and f"os.environ.get('{port_variable}', '{port}')" in healthcheck
    assert json.loads(by_kind["ENTRYPOINT"]) == ["coursestream"] and json.loads(by_kind["CMD"]) == [command]
    # Its settings are accepted, it serves beyond the container (a token is then required), and
    # no secret is baked into the image.
    env = dockerfile_env(instructions)
    assert not [variable for variable in env if SECRET_NAME.search(variable) and variable != SECRETS_DIR_VARIABLE]
    assert env[SECRETS_DIR_VARIABLE] == "/run/secrets"
    settings, encoder = validate_settings(env)
    if command == "worker":
        assert settings.web_host == "0.0.0.0" and settings.vector_store == "qdrant"
        assert str(settings.data_dir) in by_kind["VOLUME"]
    else:
        assert encoder.host == "0.0.0.0" and encoder.port == ENCODER_PORT and encoder.device == "cuda"
        assert encoder.media_root == Path("/media")
        assert any(i == "RUN" and "mkdir -p /media" in a for i, a in instructions)


LOCK = DOCKER / "requirements.lock"


def lock_entries() -> dict[str, tuple[str, list[str]]]:
    """The lock file's requirements: name -> (version, sha256 hashes)."""
    entries, current = {}, None
    for line in LOCK.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if match := re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)", line):
            current = match.group(1).lower().replace("_", "-").replace(".", "-")
            entries[current] = (match.group(2), [])
        for digest in re.findall(r"--hash=sha256:([0-9a-f]{64})", line):
            entries[current][1].append(digest)
    return entries


def test_the_images_install_a_lock_file_with_hashes() -> None:
    entries = lock_entries()
    assert entries and all(hashes for _, hashes in entries.values()), "every pin needs its hashes"
    project = {re.split(r"[\[<>=!~ ;]", requirement, maxsplit=1)[0].lower().replace("_", "-")
               for requirement in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
    # Every dependency of the project is pinned, except torch (see the Dockerfiles' headers),
    # and so is setuptools, which builds the project without fetching anything.
    assert project - {"torch"} <= set(entries), project - {"torch"} - set(entries)
    assert "setuptools" in entries
    assert not [name for name in entries if name == "torch" or name.startswith("nvidia-")]
    # The pins meet the security lower bounds of pyproject.toml.
    from packaging.requirements import Requirement

    for requirement in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]:
        parsed = Requirement(requirement)
        name = parsed.name.lower().replace("_", "-")
        if name in entries:
            assert parsed.specifier.contains(entries[name][0], prereleases=True), (requirement, entries[name][0])


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


def secret_mounts(service: dict, compose: dict) -> dict[str, str]:
    """Where a service's Compose secrets appear (absolute path) -> the file each comes from."""
    mounts = {}
    for entry in service.get("secrets", []):
        source, target = (entry, entry) if isinstance(entry, str) else (entry["source"], entry.get("target", entry["source"]))
        mounts[target if target.startswith("/") else f"/run/secrets/{target}"] = compose["secrets"][source]["file"]
    return mounts


def listeners(value: str) -> dict[str, tuple[str, int]]:
    """Kafka listeners: name -> (host, port)."""
    found = {}
    for listener in value.split(","):
        name, _, address = listener.partition("://")
        host, _, port = address.rpartition(":")
        found[name] = (host, int(port))
    return found


OURS = ("encoder", "topics", "worker")


def test_compose_is_secure_by_default(compose: dict) -> None:
    services, secret_files = compose["services"], compose["secrets"]
    # Every secret is a file that make-secrets.sh generates; no service gets one as a variable.
    script = (COMPOSE / "make-secrets.sh").read_text()
    for name, secret in secret_files.items():
        assert secret["file"].startswith("./secrets/") and f"> {Path(secret['file']).name}" in script.replace(
            "-out ", "> ").replace("-keyout ", "> "), name
    for name, service in services.items():
        for variable in service_env(service):
            assert not SECRET_NAME.search(variable) or variable.endswith("__FILE") or variable == SECRETS_DIR_VARIABLE, (
                f"{name}: {variable} must come from a file")
    # The workers and the topics step: every secret setting from its file; Kafka over SASL_SSL,
    # checked against the stack's CA.
    for name in ("worker", "topics"):
        mounts = secret_mounts(services[name], compose)
        env = service_env(services[name])
        assert env[SECRETS_DIR_VARIABLE] == "/run/secrets"
        settings, _ = validate_settings(env, [Path(path).name for path in mounts if path.startswith("/run/secrets/")])
        assert settings.kafka_security_protocol == "SASL_SSL" and settings.kafka_sasl_password is not None
        assert str(settings.kafka_ssl_cafile) in mounts
        assert settings.qdrant_api_key is not None and settings.web_token is not None
        assert settings.encoder.token is not None
    # The encoder: its token from its file; media by path only from a read-only folder; by URL
    # only from allowed hosts.
    encoder_mounts = secret_mounts(services["encoder"], compose)
    _, encoder = validate_settings(service_env(services["encoder"]), [Path(p).name for p in encoder_mounts])
    assert encoder.token is not None and encoder.media_hosts
    assert f"./media:{encoder.media_root}:ro" in services["encoder"]["volumes"] and (COMPOSE / "media").is_dir()
    # Kafka: clients beyond the container speak SASL over TLS; anything in plain text listens on
    # the container's loopback only; users and keystore from secrets; no port on the host.
    kafka = services["kafka"]["environment"]
    protocols = dict(item.split(":") for item in kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    for name, (host, _) in listeners(kafka["KAFKA_LISTENERS"]).items():
        assert protocols[name] == "SASL_SSL" or host == "127.0.0.1", name
    assert set(kafka["KAFKA_SASL_ENABLED_MECHANISMS"].split(",")) <= {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}
    kafka_mounts = secret_mounts(services["kafka"], compose)
    jaas = kafka["KAFKA_OPTS"].split("java.security.auth.login.config=")[1].split()[0]
    assert jaas in kafka_mounts and f"/etc/kafka/secrets/{kafka['KAFKA_SSL_KEYSTORE_FILENAME']}" in kafka_mounts
    assert "ports" not in services["kafka"]
    # Qdrant needs its key (in the config file it reads over its defaults); Grafana has no default password.
    assert secret_mounts(services["qdrant"], compose)["/qdrant/config/local.yaml"] == "./secrets/qdrant_local.yaml"
    assert "api_key" in script.split("qdrant_local.yaml")[0].splitlines()[-1]
    grafana = services["grafana"]["environment"]
    assert "GF_SECURITY_ADMIN_PASSWORD" not in grafana
    assert grafana["GF_SECURITY_ADMIN_PASSWORD__FILE"] in secret_mounts(services["grafana"], compose)
    # Our containers: read-only root, no capabilities, no privilege escalation (and non-root:
    # the images' USER, checked above).
    for name in OURS:
        service = services[name]
        assert service["read_only"] is True and service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
    # Only Prometheus and Grafana publish ports, on the host's loopback; the rest of the stack has
    # no way out but the encoder's.
    published = {name: service["ports"] for name, service in services.items() if "ports" in service}
    assert set(published) == {"prometheus", "grafana"}
    assert all(port.startswith("127.0.0.1:") for ports in published.values() for port in ports)
    assert compose["networks"]["backend"]["internal"] is True
    for name in ("kafka", "qdrant", "topics", "worker"):
        assert services[name]["networks"] == ["backend"], name


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


def promql_metrics(expression: str, exported: dict[str, set[str]], where: str) -> set[str]:
    """The metrics a PromQL expression reads, once it is checked to parse and to read only
    exported metrics, and only their labels (or the target's) in matchers and aggregations."""
    parsed = promql_parser.parse(GRAFANA_INTERVALS.sub("5m", expression))
    selectors: list[promql_parser.VectorSelector] = []
    aggregations: list[promql_parser.AggregateExpr] = []

    def visit(node: object) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            selectors.append(node)
        elif isinstance(node, promql_parser.AggregateExpr):
            aggregations.append(node)

    promql_parser.walk(parsed, visit)
    labels = set(TARGET_LABELS)
    for selector in selectors:
        assert selector.name in exported, f"{where}: no metric {selector.name}"
        labels |= exported[selector.name]
        for matcher in selector.matchers.matchers:
            assert matcher.name in labels, f"{where}: {selector.name} has no label {matcher.name}"
    for aggregation in aggregations:
        if aggregation.modifier is not None:
            assert set(aggregation.modifier.labels) <= labels, f"{where}: {aggregation.modifier}"
    return {selector.name for selector in selectors}


def promql_labels(expression: str, exported: dict[str, set[str]]) -> set[str]:
    """The labels the series an expression reads may carry."""
    found = set(TARGET_LABELS)
    promql_parser.walk(promql_parser.parse(GRAFANA_INTERVALS.sub("5m", expression)), lambda node: found.update(
        exported.get(node.name, ())) if isinstance(node, promql_parser.VectorSelector) else None)
    return found


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
        if "repeat" in panel:  # a panel per value of a variable (one per A/B variant)
            assert panel["repeat"] in variables, panel["title"]
        for target in panel["targets"]:
            used |= promql_metrics(target["expr"], exported, panel["title"])
            legend_labels = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")))
            assert legend_labels <= promql_labels(target["expr"], exported), f"{panel['title']}: {target['legendFormat']}"
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":  # label_values(metric, label): an exported metric and label
            metric, label = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", variable["query"]["query"]).groups()
            assert label in exported[f"{metric}_total" if f"{metric}_total" in exported else metric], variable["name"]
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
        "coursestream_recommendations_total",
        "coursestream_take_ups_total",
        "coursestream_lists_taken_up_total",
    ):
        assert metric in used, f"the dashboard shows no {metric}"


ALERTS = COMPOSE / "alerts.yml"
#: A Prometheus duration (as a rule's ``for``).
DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")


def alert_groups() -> list[dict]:
    return yaml.safe_load(ALERTS.read_text())["groups"]


def test_alert_rules_parse_and_use_exported_metrics() -> None:
    exported = exported_metrics()
    used, names = set(), []
    for group in alert_groups():
        assert set(group) == {"name", "rules"}
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
            names.append(rule["alert"])
            assert re.fullmatch(r"Coursestream[A-Z][A-Za-z0-9]+", rule["alert"])
            used |= promql_metrics(rule["expr"], exported, rule["alert"])
            assert DURATION.match(rule["for"]), rule["alert"]
            assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
            assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
            for text in rule["annotations"].values():  # templates name only labels the series carry
                assert set(re.findall(r"\$labels\.(\w+)", text)) <= promql_labels(rule["expr"], exported), text
    assert len(names) == len(set(names))
    # what operators are to be woken for: lag, dead letters, freshness, the encoder, parked
    # content, and lists stopping while events arrive
    for metric in (
        "coursestream_consumer_lag",
        "coursestream_dead_letters_total",
        "coursestream_event_to_recommendation_seconds_bucket",
        "coursestream_encoder_requests_total",
        "coursestream_encoder_calls_total",
        "coursestream_parked_content_age_seconds",
        "coursestream_recommendations_total",
        "coursestream_events_total",
    ):
        assert metric in used, f"no alert rule reads {metric}"


def test_prometheus_loads_the_alert_rules_and_sends_alerts_to_alertmanager(compose: dict) -> None:
    config = yaml.safe_load((COMPOSE / "prometheus.yml").read_text())
    mounts = dict(volume.split(":")[:2] for volume in compose["services"]["prometheus"]["volumes"])
    assert config["rule_files"] == [mounts["./alerts.yml"]]
    (target,) = [t for manager in config["alerting"]["alertmanagers"] for static in manager["static_configs"]
                 for t in static["targets"]]
    host, _, port = target.partition(":")
    alertmanager = compose["services"][host]
    assert alertmanager["image"].startswith("prom/alertmanager:") and port == "9093"
    assert set(alertmanager["networks"]) & set(compose["services"]["prometheus"]["networks"])
    routes = yaml.safe_load((COMPOSE / "alertmanager.yml").read_text())
    mounts = dict(volume.split(":")[:2] for volume in alertmanager["volumes"])
    assert mounts["./alertmanager.yml"] == "/etc/alertmanager/alertmanager.yml"
    receivers = {receiver["name"] for receiver in routes["receivers"]}
    assert routes["route"]["receiver"] in receivers
    assert {route["receiver"] for route in routes["route"].get("routes", [])} <= receivers


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


#: Kinds of custom resources (their operator's CRD), which the Kubernetes schemas do not hold.
CUSTOM_KINDS = {"PrometheusRule": "monitoring.coreos.com/v1"}


def test_kubernetes_manifests_validate(manifests: dict[tuple[str, str], dict]) -> None:
    for (kind, name), document in manifests.items():
        if kind in CUSTOM_KINDS:
            assert document["apiVersion"] == CUSTOM_KINDS[kind], f"{kind}/{name}"
            continue  # checked below, against the compose stack's rules
        try:
            kubernetes_validate.validate(document, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(map(str, error.path))
            pytest.fail(f"{kind}/{name}: {path}: {error.message}")
        for quantity in resource_quantities(document):
            assert QUANTITY.match(quantity), f"{kind}/{name}: {quantity!r} is not a resource quantity"


def test_the_operator_s_alert_rules_are_the_compose_stack_s(manifests: dict[tuple[str, str], dict]) -> None:
    (rules,) = [document for (kind, _), document in manifests.items() if kind == "PrometheusRule"]
    assert set(rules) == {"apiVersion", "kind", "metadata", "spec"} and set(rules["spec"]) == {"groups"}
    assert rules["spec"]["groups"] == alert_groups()


def pod_env(container: dict, manifests: dict[tuple[str, str], dict]) -> dict[str, str]:
    """The container's environment as Kubernetes gives it: envFrom, then env."""
    env = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(manifests[("ConfigMap", source["configMapRef"]["name"])]["data"])
    for variable in container.get("env", []):
        assert "value" in variable or "fieldRef" in variable["valueFrom"], f"{variable['name']}: secrets are files"
        if "value" in variable:
            env[variable["name"]] = variable["value"]
    return env


def mounted_secret_files(workload: dict, container: dict, env: dict[str, str]) -> list[str]:
    """The files of Secrets the container sees in its secrets dir (COURSESTREAM_SECRETS_DIR)."""
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == env[SECRETS_DIR_VARIABLE]]
    assert mount.get("readOnly") is True
    (volume,) = [v for v in workload["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"]]
    return [item["path"] for source in volume["projected"]["sources"] for item in source["secret"]["items"]]


def pod_settings(workload: dict, manifests: dict[tuple[str, str], dict]) -> tuple[Settings, EncoderSettings]:
    container = only_container(workload)
    env = pod_env(container, manifests)
    return validate_settings(env, mounted_secret_files(workload, container, env))


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
    settings, _ = pod_settings(workload, manifests)
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
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == claim["metadata"]["name"]]
    assert Path(mount["mountPath"]) == settings.data_dir
    # Production back ends, and no more workers than partitions to share; every secret from its file.
    assert settings.vector_store == "qdrant" and settings.qdrant_url and not settings.kafka_embedded
    assert settings.kafka_security_protocol.startswith("SASL") and settings.kafka_sasl_password is not None
    assert settings.encoder.token is not None and settings.web_token is not None
    assert settings.qdrant_api_key is not None
    assert workload["spec"]["replicas"] <= settings.partitions


def test_encoder_deployment(manifests: dict[tuple[str, str], dict]) -> None:
    workload = manifests[("Deployment", "coursestream-encoder")]
    container = only_container(workload)
    _, encoder = pod_settings(workload, manifests)
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    port = encoder.port
    assert probes(container) == {"livenessProbe": ("/healthz", port), "readinessProbe": ("/readyz", port)}
    assert workload["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == str(encoder.port)
    assert encoder.host == "0.0.0.0" and encoder.token is not None
    # The workers' encoder URL is this Deployment's Service.
    url = urlsplit(pod_settings(manifests[("StatefulSet", "coursestream-worker")], manifests)[0].encoder_url)
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


# ---------------------------------------------------------------------------------------------
# Security (Kubernetes, and deploy/ as a whole)


def workloads(manifests: dict[tuple[str, str], dict]) -> dict[str, dict]:
    return {name: document for (kind, name), document in manifests.items() if kind in ("StatefulSet", "Deployment")}


def test_kubernetes_pods_are_locked_down(manifests: dict[tuple[str, str], dict]) -> None:
    # kubectl apply -k applies no Secret: no example value can become a credential.
    assert not [name for kind, name in manifests if kind == "Secret"]
    namespace = manifests[("Namespace", "coursestream")]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for name, workload in workloads(manifests).items():
        pod = workload["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False, name
        context = pod["securityContext"]
        assert context["runAsNonRoot"] is True and context["runAsUser"] != 0, name
        assert context["seccompProfile"]["type"] == "RuntimeDefault", name
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False and context["capabilities"]["drop"] == ["ALL"], name
            # The root is read-only: scratch space is an emptyDir at /tmp.
            (tmp,) = [mount for mount in container["volumeMounts"] if mount["mountPath"] == "/tmp"]
            assert any(volume["name"] == tmp["name"] and "emptyDir" in volume for volume in pod["volumes"]), name


def test_the_encoder_reads_media_only_from_its_root_and_allowed_hosts(manifests: dict[tuple[str, str], dict]) -> None:
    workload = manifests[("Deployment", "coursestream-encoder")]
    _, encoder = pod_settings(workload, manifests)
    assert encoder.media_root is not None and encoder.media_hosts
    (mount,) = [m for m in only_container(workload)["volumeMounts"] if Path(m["mountPath"]) == encoder.media_root]
    assert mount["readOnly"] is True


def policies_for(manifests: dict[tuple[str, str], dict], labels: dict[str, str], kind: str) -> list[dict]:
    """The NetworkPolicies of ``kind`` (Ingress, Egress) that select pods with ``labels``."""
    return [policy for (k, _), policy in manifests.items() if k == "NetworkPolicy"
            and kind in policy["spec"]["policyTypes"]
            and policy["spec"]["podSelector"].get("matchLabels", {}).items() <= labels.items()]


def peers_and_ports(policies: list[dict], direction: str) -> tuple[list[dict], set[int]]:
    rules = [rule for policy in policies for rule in policy["spec"].get(direction, [])]
    peers = [peer for rule in rules for peer in rule.get("from" if direction == "ingress" else "to", [])]
    ports = {port["port"] for rule in rules for port in rule.get("ports", [])}
    return peers, ports


def test_network_policies_deny_by_default_and_open_only_what_is_needed(manifests: dict[tuple[str, str], dict]) -> None:
    policies = {name: policy for (kind, name), policy in manifests.items() if kind == "NetworkPolicy"}
    deny = [p for p in policies.values() if p["spec"]["podSelector"] == {} and set(p["spec"]["policyTypes"]) ==
            {"Ingress", "Egress"} and not p["spec"].get("ingress") and not p["spec"].get("egress")]
    assert deny, "a default-deny policy for every pod of the namespace"
    worker_labels = workloads(manifests)["coursestream-worker"]["spec"]["template"]["metadata"]["labels"]
    encoder_labels = workloads(manifests)["coursestream-encoder"]["spec"]["template"]["metadata"]["labels"]
    settings, encoder = pod_settings(workloads(manifests)["coursestream-worker"], manifests)

    def describe(peer: dict) -> str:
        assert "ipBlock" not in peer, "no address ranges into the namespace"
        selected = {**peer.get("namespaceSelector", {}).get("matchLabels", {}),
                    **peer.get("podSelector", {}).get("matchLabels", {})}
        assert selected, f"a peer selecting everything: {peer}"
        if selected.items() >= worker_labels.items() and "namespaceSelector" not in peer:
            return "workers"
        return next(name for name in ("prometheus", "gateway") if name in selected.values())

    # The workers' port: the workers, Prometheus and the gateway; nothing else, no other port.
    peers, ports = peers_and_ports(policies_for(manifests, worker_labels, "Ingress"), "ingress")
    assert ports == {settings.web_port} and sorted(map(describe, peers)) == ["gateway", "prometheus", "workers"]
    # The encoder's port: the workers and Prometheus.
    peers, ports = peers_and_ports(policies_for(manifests, encoder_labels, "Ingress"), "ingress")
    assert ports == {encoder.port} and sorted(map(describe, peers)) == ["prometheus", "workers"]
    # Qdrant (the chart's pods): the workers and Prometheus.
    peers, ports = peers_and_ports(policies_for(manifests, {"app.kubernetes.io/name": "qdrant"}, "Ingress"), "ingress")
    assert ports == {6333} and sorted(map(describe, peers)) == ["prometheus", "workers"]
    # Out of the encoder: DNS, and HTTPS to public addresses only (media URLs).
    peers, ports = peers_and_ports(policies_for(manifests, encoder_labels, "Egress"), "egress")
    assert ports == {53, 443}
    (public,) = [peer["ipBlock"] for peer in peers if "ipBlock" in peer]
    assert public["cidr"] == "0.0.0.0/0"
    for private in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.169.254/32", "127.0.0.1/32", "100.64.0.0/10"):
        assert any(ipaddress.ip_network(private).subnet_of(ipaddress.ip_network(excluded)) for excluded in public["except"])
    # Out of the workers: DNS, the other workers, the encoder, Qdrant and Kafka only.
    peers, ports = peers_and_ports(policies_for(manifests, worker_labels, "Egress"), "egress")
    assert not [peer for peer in peers if "ipBlock" in peer]
    kafka_port = int(settings.kafka_bootstrap_servers.rsplit(":", 1)[1])
    assert ports == {53, settings.web_port, encoder.port, 6333, kafka_port}


def test_qdrant_needs_its_api_key_which_only_the_workers_mount(manifests: dict[tuple[str, str], dict]) -> None:
    assert yaml.safe_load((K8S / "qdrant-values.yaml").read_text())["apiKey"] is True  # the chart generates it
    for name, workload in workloads(manifests).items():
        sources = [source["secret"] for volume in workload["spec"]["template"]["spec"]["volumes"]
                   for source in volume.get("projected", {}).get("sources", [])]
        qdrant = [item for source in sources if source["name"] == "qdrant-apikey" for item in source["items"]]
        assert qdrant == ([{"key": "api-key", "path": "COURSESTREAM_QDRANT_API_KEY"}] if name == "coursestream-worker"
                          else []), name


def secret_values(node: object) -> Iterator[tuple[str, object]]:
    """(key, value) of every mapping entry under ``node`` whose key names a secret."""
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(key, str) and SECRET_NAME.search(key) and not isinstance(value, (dict, list)):
                yield key, value
            yield from secret_values(value)
    elif isinstance(node, list):
        for item in node:
            yield from secret_values(item)


def test_no_secret_value_and_no_example_secret_anywhere_under_deploy() -> None:
    for path in deploy_files():
        text = path.read_text()
        # No defaulted secret (like ${GRAFANA_ADMIN_PASSWORD:-admin}) and no example value.
        assert not re.search(r"\$\{\w*(PASSWORD|TOKEN|API_?KEY|SECRET)\w*:-", text), path
        if path.suffix in (".yaml", ".yml"):
            # A secret is a file (its path), or generated by its chart (apiKey: true); never a value
            # here. (Switches like automountServiceAccountToken: false are not secrets.)
            held = [(key, value) for document in yaml.safe_load_all(text) for key, value in secret_values(document)
                    if not isinstance(value, bool) and not (isinstance(value, str) and value.startswith("/"))]
            assert not held, f"{path.relative_to(ROOT)}: {held}"


def test_every_topic_has_a_retention() -> None:
    settings = validate_settings({})[0]
    configs = topic_configs(settings)
    assert set(configs) == set(topic_names(settings))
    day_ms = 24 * 3600 * 1000
    for topic in (settings.topic_learner_events, settings.topic_recommendations, settings.topic_dead_letter):
        assert int(configs[topic]["retention.ms"]) == settings.learner_data_retention_days * day_ms
    for topic, config in configs.items():
        assert config.get("cleanup.policy") == "compact" or int(config["retention.ms"]) > 0, topic
