"""deploy/: the Kubernetes manifests, the systemd units and the Grafana dashboard, offline.

- Every Kubernetes manifest against Kubernetes' own schemas (kubernetes-validate, strict:
  an unknown field fails, as ``kubectl apply``'s strict field validation does), and KEDA's
  ScaledObject and TriggerAuthentication against KEDA's CRD schemas (tests/data/keda/),
  made strict the same way.
- The rules that tie the manifests to the code and to each other: the ScaledObject scales
  the worker Deployment on the queue ``distshot worker`` consumes, the grace period covers
  the worker's drain as the code bounds it, every Secret and ConfigMap reference resolves,
  selectors select what they should, ports and probes line up, pods run locked down.
- The systemd units with ``systemd-analyze verify`` (when systemd-analyze is installed) and
  the keys they must have.
- The Grafana dashboard: it loads, and every metric and label its queries use exists.

Each check is a function over the loaded manifests; ``test_checks_catch_breakage`` breaks a
copy of them in the ways that matter and asserts each check then fails.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
import jsonschema
import kubernetes_validate
import pytest
import yaml
from dramatiq.brokers.stub import StubBroker

from distshot.actors.capture import CAPTURE_ACTOR, queue_for
from distshot.core.config import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
KUBE = ROOT / "deploy" / "kubernetes"
SYSTEMD = ROOT / "deploy" / "systemd"
DASHBOARD = ROOT / "deploy" / "grafana" / "distshot.json"
KEDA_SCHEMAS = Path(__file__).parent / "data" / "keda"

#: Kubernetes versions the manifests must be valid for (schemas shipped by
#: kubernetes-validate): the oldest minor still commonly run, and the newest it knows.
KUBERNETES_VERSIONS = ("1.31", "1.37")
WORKER = "distshot-worker"
SERVE = "distshot-serve"

Resources = list[dict[str, Any]]


def load_manifests(directory: Path = KUBE) -> Resources:
    resources: Resources = []
    for path in sorted(directory.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if document is not None:
                document.setdefault("metadata", {})
                document["metadata"].setdefault("annotations", {})
                document["__file__"] = path.name
                resources.append(document)
    return resources


def plain(resource: dict[str, Any]) -> dict[str, Any]:
    """The resource as Kubernetes sees it (without our bookkeeping key and the empty
    annotations map ``load_manifests`` adds)."""
    data = {k: v for k, v in resource.items() if k != "__file__"}
    data["metadata"] = {k: v for k, v in data["metadata"].items() if v != {}}
    return data


def find(resources: Resources, kind: str, name: str) -> dict[str, Any]:
    matches = [r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]


def kinds(resources: Resources, kind: str) -> list[dict[str, Any]]:
    return [r for r in resources if r["kind"] == kind]


def containers(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    spec = deployment["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def configmap_env(resources: Resources) -> dict[str, str]:
    """The environment a container gets from the ConfigMaps it names in envFrom."""
    env: dict[str, str] = {}
    for container in containers(find(resources, "Deployment", WORKER)):
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                config = find(resources, "ConfigMap", source["configMapRef"]["name"])
                env.update(config["data"])
    return env


# -- what the code says --------------------------------------------------------------------


def worker_drain_bound() -> float:
    """The longest a worker process takes from SIGTERM to exit, from the code's own bounds.

    Dramatiq's worker process notices the signal in its main loop (``time.sleep(1)``), then
    ``Worker.stop``: the ShutdownNotifications middleware interrupts the jobs in flight
    (the capture actor's ``notify_shutdown``; the AsyncIO bridge polls for the interrupt
    every ``interrupt_check_ival`` and then waits for the job's coroutine to clean up, at
    most ``done.wait(timeout=...)``), idle worker threads leave their ``work_queue.get``
    within ``WORKER_TIMEOUT``; then the consumer threads stop (one more ``WORKER_TIMEOUT``)
    and the replying consumer waits for its replies' confirms (``CLOSE_WAIT_S``); then the
    RuntimeLifecycle middleware closes the engine: the browser (``_CLOSE_TIMEOUT``, then it
    is killed) and the Playwright driver (``_CLOSE_TIMEOUT * 2``).

    The jobs themselves are not waited for: they are interrupted and handed back to the
    queue. Were ``notify_shutdown`` off, a stop would wait for the longest job, the actor's
    ``time_limit``, and that is what this returns then.
    """
    import dramatiq.cli
    import dramatiq.worker
    from dramatiq.asyncio import EventLoopThread

    from distshot.actors import install_worker
    from distshot.actors.capture import declare_capture_actor
    from distshot.actors.reply_consumer import CLOSE_WAIT_S
    from distshot.actors.runtime import WorkerRuntime
    from distshot.core.contracts import EngineConfig
    from distshot.engines import playwright

    broker = StubBroker(middleware=[])
    install_worker(broker, WorkerRuntime("null", EngineConfig()))
    options = broker.get_actor(CAPTURE_ACTOR).options
    if not options.get("notify_shutdown"):
        limit = inspect.signature(declare_capture_actor).parameters["time_limit_ms"].default
        return float(options.get("time_limit", limit)) / 1000

    def number(pattern: str, source: str) -> float:
        match = re.search(pattern, source)
        assert match, f"Dramatiq's code changed: {pattern!r} not found; derive the bound again"
        return float(match.group(1))

    main_loop = number(r"while running:\s+time\.sleep\(([\d.]+)\)", inspect.getsource(dramatiq.cli))
    cleanup = number(
        r"done\.wait\(timeout=([\d.]+)\)", inspect.getsource(EventLoopThread.run_coroutine)
    )
    check = inspect.signature(EventLoopThread.__init__).parameters["interrupt_check_ival"]
    poll = dramatiq.worker.WORKER_TIMEOUT / 1000
    close_source = inspect.getsource(playwright.PlaywrightEngine.close)
    driver = number(r"_CLOSE_TIMEOUT \* (\d+)", close_source) * playwright._CLOSE_TIMEOUT
    workers = max(poll, float(check.default) + cleanup)
    consumers = poll + CLOSE_WAIT_S
    engine = playwright._CLOSE_TIMEOUT + driver
    return main_loop + workers + consumers + engine


def test_worker_drain_bound_is_what_the_manifests_say() -> None:
    # 1 (main loop) + 1.1 (interrupt + clean-up) + 1 + 10 (consumer, confirms) + 5 + 10.
    assert worker_drain_bound() == pytest.approx(28.1)


# -- the checks ----------------------------------------------------------------------------


def check_kustomization(resources: Resources, directory: Path = KUBE) -> None:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text("utf-8"))
    files = {p.name for p in directory.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(files), "kustomization.yaml lists"
    images = {image["name"] for image in kustomization["images"]}
    for deployment in kinds(resources, "Deployment"):
        for container in containers(deployment):
            assert container["image"].split(":")[0] in images, container["image"]


def check_kubernetes_schemas(resources: Resources) -> None:
    for resource in resources:
        if resource["apiVersion"].startswith("keda.sh/"):
            continue
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(plain(resource), version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                raise AssertionError(
                    f"{resource['__file__']}: {resource['kind']} "
                    f"{resource['metadata']['name']} (Kubernetes {version}): {exc.message} "
                    f"at {'.'.join(map(str, exc.path))}"
                ) from None


def strict_schema(schema: Any) -> Any:
    """An OpenAPI v3 CRD schema where unknown fields fail, as the API server's strict field
    validation makes them (objects with ``properties`` and no other rule for extra keys)."""
    if isinstance(schema, list):
        return [strict_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    strict = {key: strict_schema(value) for key, value in schema.items()}
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        strict["additionalProperties"] = False
    return strict


def keda_validator(kind: str) -> jsonschema.Draft7Validator:
    path = KEDA_SCHEMAS / f"{kind.lower()}.v1alpha1.schema.json"
    return jsonschema.Draft7Validator(strict_schema(json.loads(path.read_text("utf-8"))))


def check_keda_schemas(resources: Resources) -> None:
    keda = [r for r in resources if r["apiVersion"].startswith("keda.sh/")]
    assert {r["kind"] for r in keda} == {"ScaledObject", "TriggerAuthentication"}
    for resource in keda:
        assert resource["apiVersion"] == "keda.sh/v1alpha1"
        errors = list(keda_validator(resource["kind"]).iter_errors(plain(resource)))
        assert not errors, f"{resource['__file__']}: {resource['kind']}: " + "; ".join(
            f"{e.message} at {'.'.join(map(str, e.path))}" for e in errors
        )


def check_scaling(resources: Resources) -> None:
    """KEDA scales the worker Deployment, on the queue its workers consume."""
    worker = find(resources, "Deployment", WORKER)
    [scaled] = kinds(resources, "ScaledObject")
    target = scaled["spec"]["scaleTargetRef"]
    assert target.get("kind", "Deployment") == "Deployment"
    assert target.get("apiVersion", "apps/v1") == "apps/v1"
    assert target["name"] == worker["metadata"]["name"]
    settings = load_settings(env=configmap_env(resources))
    args = containers(worker)[0]["args"]
    engine = args[args.index("--engine") + 1] if "--engine" in args else settings.engine
    [trigger] = scaled["spec"]["triggers"]
    assert trigger["type"] == "rabbitmq"
    assert trigger["metadata"]["queueName"] == queue_for(engine, settings.queue_prefix)
    assert trigger["metadata"]["mode"] == "QueueLength"
    auth = find(resources, "TriggerAuthentication", trigger["authenticationRef"]["name"])
    parameters = {ref["parameter"]: ref for ref in auth["spec"]["secretTargetRef"]}
    assert "host" in parameters, "KEDA's rabbitmq scaler reads the broker URL as `host`"
    host = parameters["host"]
    broker_env = [
        env["valueFrom"]["secretKeyRef"]
        for env in containers(worker)[0]["env"]
        if env["name"] == "DISTSHOT_BROKER_URL"
    ]
    assert broker_env == [{"name": host["name"], "key": host["key"]}], (
        "KEDA must watch the broker the workers use"
    )


def check_grace_period(resources: Resources) -> None:
    worker = find(resources, "Deployment", WORKER)
    grace = worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= worker_drain_bound(), f"{grace} s < the worker's drain bound"
    serve = find(resources, "Deployment", SERVE)
    args = containers(serve)[0]["args"]
    drain = float(args[args.index("--drain-timeout") + 1])
    # uvicorn's timeout_graceful_shutdown (distshot/server/run.py) and the rabbitmq
    # backend's reply consumer join (distshot/server/rabbitmq.py).
    assert serve["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= drain + 5 + 10


def check_references(resources: Resources) -> None:
    """Every secretKeyRef, configMapKeyRef, envFrom and TriggerAuthentication reference
    names a Secret or ConfigMap in the manifests, and a key it has."""

    def keys(kind: str, name: str) -> set[str]:
        resource = find(resources, kind, name)
        return set(resource.get("data", {})) | set(resource.get("stringData", {}))

    for deployment in kinds(resources, "Deployment"):
        for container in containers(deployment):
            for env in container.get("env", []):
                source = env.get("valueFrom", {})
                for ref_kind, kind in (
                    ("secretKeyRef", "Secret"),
                    ("configMapKeyRef", "ConfigMap"),
                ):
                    if ref_kind in source:
                        ref = source[ref_kind]
                        assert ref["key"] in keys(kind, ref["name"]), f"{kind} {ref}"
            for source in container.get("envFrom", []):
                for ref_kind, kind in (("secretRef", "Secret"), ("configMapRef", "ConfigMap")):
                    if ref_kind in source:
                        find(resources, kind, source[ref_kind]["name"])
    for auth in kinds(resources, "TriggerAuthentication"):
        for ref in auth["spec"].get("secretTargetRef", []):
            assert ref["key"] in keys("Secret", ref["name"]), f"TriggerAuthentication {ref}"


def check_settings(resources: Resources) -> None:
    """The ConfigMap's DISTSHOT_ names are settings, and their values parse."""
    names = {f"DISTSHOT_{field.name.upper()}" for field in dataclasses.fields(Settings)}
    for config in kinds(resources, "ConfigMap"):
        for key in config["data"]:
            if key.startswith("DISTSHOT_"):
                assert key in names, f"{key} is not a distshot setting"
    load_settings(env=configmap_env(resources))


def check_selectors(resources: Resources) -> None:
    def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in selector.items())

    pods = {
        d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"]
        for d in kinds(resources, "Deployment")
    }
    for deployment in kinds(resources, "Deployment"):
        assert selects(
            deployment["spec"]["selector"]["matchLabels"], pods[deployment["metadata"]["name"]]
        )
    [pdb] = kinds(resources, "PodDisruptionBudget")
    chosen = {
        name
        for name, labels in pods.items()
        if selects(pdb["spec"]["selector"]["matchLabels"], labels)
    }
    assert chosen == {WORKER}, f"the PodDisruptionBudget selects {sorted(chosen)}"
    [service] = kinds(resources, "Service")
    chosen = {name for name, labels in pods.items() if selects(service["spec"]["selector"], labels)}
    assert chosen == {SERVE}, f"the Service selects {sorted(chosen)}"
    ports = {
        p["name"] for c in containers(find(resources, "Deployment", SERVE)) for p in c["ports"]
    }
    for port in service["spec"]["ports"]:
        assert port["targetPort"] in ports


def check_ports_and_probes(resources: Resources) -> None:
    """The worker's --metrics port is its probes' and Prometheus's; serve's probes are
    /healthz and /readyz."""
    worker = find(resources, "Deployment", WORKER)
    [container] = containers(worker)
    args = container["args"]
    assert args[0] == "worker"
    host, _, port = args[args.index("--metrics") + 1].rpartition(":")
    assert host == "0.0.0.0", "the metrics endpoint must listen beyond the pod's loopback"
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert int(port) in named.values()
    annotations = worker["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == port
    assert annotations["prometheus.io/path"] == "/metrics"
    for probe in ("livenessProbe", "readinessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] == "/metrics"
        assert named.get(get["port"], get["port"]) == int(port)
    serve = find(resources, "Deployment", SERVE)
    [container] = containers(serve)
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    args = container["args"]
    assert int(args[args.index("--port") + 1]) in named.values()
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    annotations = serve["spec"]["template"]["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) in named.values()


def check_cli_arguments(resources: Resources) -> None:
    """Every flag the manifests give ``distshot worker`` or ``distshot serve`` exists."""
    from distshot.cli import main

    assert isinstance(main, click.Group)
    arriving: dict[str, set[str]] = {"worker": set(), "serve": set()}
    for deployment in kinds(resources, "Deployment"):
        for container in containers(deployment):
            assert container["command"] == ["distshot"]
            name, *args = container["args"]
            command = main.commands[name]
            known = {opt for param in command.params for opt in param.opts}
            flags = {arg for arg in args if arg.startswith("--")}
            assert flags - known <= arriving[name], f"unknown: {sorted(flags - known)}"


def check_security(resources: Resources) -> None:
    for deployment in kinds(resources, "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        assert pod.get("automountServiceAccountToken") is False
        volumes = {v["name"]: v for v in pod["volumes"]}
        for container in containers(deployment):
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"]["drop"] == ["ALL"]
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert "emptyDir" in volumes[mounts["/tmp"]]
            assert container["resources"]["requests"] and container["resources"]["limits"]
    worker = find(resources, "Deployment", WORKER)
    [container] = containers(worker)
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    shm = worker["spec"]["template"]["spec"]["volumes"]
    assert {v["name"]: v for v in shm}[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory"


def check_secret_templates(resources: Resources) -> None:
    """The Secrets are templates: every value is a marked placeholder, nothing real."""
    for secret in kinds(resources, "Secret"):
        assert "data" not in secret, "templates use stringData"
        for key, value in secret["stringData"].items():
            assert "CHANGE-ME" in value, f"Secret {secret['metadata']['name']}.{key}"


CHECKS: list[Callable[[Resources], None]] = [
    check_kustomization,
    check_kubernetes_schemas,
    check_keda_schemas,
    check_scaling,
    check_grace_period,
    check_references,
    check_settings,
    check_selectors,
    check_ports_and_probes,
    check_cli_arguments,
    check_security,
    check_secret_templates,
]


@pytest.fixture(scope="module")
def manifests() -> Resources:
    return load_manifests()


@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.__name__)
def test_manifests(manifests: Resources, check: Callable[[Resources], None]) -> None:
    check(copy.deepcopy(manifests))


# -- the checks fail on broken manifests ---------------------------------------------------


def _worker(resources: Resources) -> dict[str, Any]:
    return find(resources, "Deployment", WORKER)


def _worker_pod(resources: Resources) -> dict[str, Any]:
    spec: dict[str, Any] = _worker(resources)["spec"]["template"]["spec"]
    return spec


def _scaled(resources: Resources) -> dict[str, Any]:
    return kinds(resources, "ScaledObject")[0]


def _env(resources: Resources, name: str) -> dict[str, Any]:
    [env] = [e for e in _worker_pod(resources)["containers"][0]["env"] if e["name"] == name]
    assert isinstance(env, dict)
    return env


BREAKAGES: dict[str, tuple[Callable[[Resources], None], Callable[[Resources], object]]] = {
    # A misspelt field: Kubernetes' strict validation refuses it.
    "unknown Deployment field": (
        check_kubernetes_schemas,
        lambda r: _worker_pod(r).__setitem__("terminationGracePeriod", 45),
    ),
    "string where an integer goes": (
        check_kubernetes_schemas,
        lambda r: _worker(r)["spec"].__setitem__("replicas", "one"),
    ),
    "unknown ScaledObject field": (
        check_keda_schemas,
        lambda r: _scaled(r)["spec"].__setitem__("minReplicas", 1),
    ),
    "ScaledObject without triggers": (
        check_keda_schemas,
        lambda r: _scaled(r)["spec"].pop("triggers"),
    ),
    "ScaledObject aims at another Deployment": (
        check_scaling,
        lambda r: _scaled(r)["spec"]["scaleTargetRef"].__setitem__("name", "distshot-workers"),
    ),
    "queue the workers do not consume": (
        check_scaling,
        lambda r: _scaled(r)["spec"]["triggers"][0]["metadata"].__setitem__(
            "queueName", "distshot.pyppeteer"
        ),
    ),
    "grace period shorter than the drain": (
        check_grace_period,
        lambda r: _worker_pod(r).__setitem__("terminationGracePeriodSeconds", 10),
    ),
    "secretKeyRef to a missing key": (
        check_references,
        lambda r: _env(r, "DISTSHOT_BROKER_URL")["valueFrom"]["secretKeyRef"].__setitem__(
            "key", "url"
        ),
    ),
    "secretKeyRef to a missing Secret": (
        check_references,
        lambda r: _env(r, "AWS_ACCESS_KEY_ID")["valueFrom"]["secretKeyRef"].__setitem__(
            "name", "s3"
        ),
    ),
    "PodDisruptionBudget selects serve": (
        check_selectors,
        lambda r: kinds(r, "PodDisruptionBudget")[0]["spec"]["selector"]["matchLabels"].__setitem__(
            "app.kubernetes.io/component", "serve"
        ),
    ),
    "unknown setting in the ConfigMap": (
        check_settings,
        lambda r: kinds(r, "ConfigMap")[0]["data"].__setitem__("DISTSHOT_THREADS", "2"),
    ),
    "probe on another port": (
        check_ports_and_probes,
        lambda r: _worker_pod(r)["containers"][0]["livenessProbe"]["httpGet"].__setitem__(
            "port", 9000
        ),
    ),
    "root filesystem writable": (
        check_security,
        lambda r: _worker_pod(r)["containers"][0]["securityContext"].__setitem__(
            "readOnlyRootFilesystem", False
        ),
    ),
    "a real value in a Secret": (
        check_secret_templates,
        lambda r: kinds(r, "Secret")[0]["stringData"].__setitem__("broker-url", "amqp://x"),
    ),
    "a flag distshot worker does not have": (
        check_cli_arguments,
        lambda r: _worker_pod(r)["containers"][0]["args"].extend(["--concurency", "2"]),
    ),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_checks_catch_breakage(manifests: Resources, breakage: str) -> None:
    check, damage = BREAKAGES[breakage]
    broken = copy.deepcopy(manifests)
    damage(broken)
    with pytest.raises(AssertionError):
        check(broken)


# -- systemd -------------------------------------------------------------------------------


def unit_entries(path: Path) -> Iterator[tuple[str, str, str]]:
    """(section, key, value) of a unit file, in order (keys may repeat)."""
    section = ""
    for raw in path.read_text("utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not a key=value line: {line!r}"
        yield section, key.strip(), value.strip()


def unit(path: Path) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for section, key, value in unit_entries(path):
        values.setdefault(f"{section}.{key}", []).append(value)
    return values


@pytest.mark.parametrize("name", ["distshot-worker@.service", "distshot-serve.service"])
def test_systemd_unit_keys(name: str) -> None:
    values = unit(SYSTEMD / name)
    assert values["Service.KillMode"] == ["mixed"]
    assert values["Service.Restart"] == ["on-failure"]
    assert float(values["Service.RestartSec"][0]) > 0
    assert values["Service.User"] == ["distshot"]
    assert "/etc/distshot/worker.env" in values["Service.EnvironmentFile"]
    for key in ("NoNewPrivileges", "PrivateTmp"):
        assert values[f"Service.{key}"] == ["yes"], key
    assert values["Service.ProtectSystem"] == ["strict"]
    assert values["Service.ReadWritePaths"], "ProtectSystem=strict needs somewhere to write"
    assert values["Install.WantedBy"] == ["multi-user.target"]
    if name.startswith("distshot-worker@"):
        assert float(values["Service.TimeoutStopSec"][0]) >= worker_drain_bound()
        assert "--engine %i" in values["Service.ExecStart"][0]
        assert "--metrics" in values["Service.ExecStart"][0]
    else:
        command = values["Service.ExecStart"][0]
        drain = float(re.search(r"--drain-timeout (\d+)", command).group(1))  # type: ignore[union-attr]
        assert float(values["Service.TimeoutStopSec"][0]) >= drain + 5 + 10


def test_systemd_env_file_names_every_variable_the_units_use() -> None:
    env = dict(
        line.split("=", 1)
        for line in (SYSTEMD / "worker.env").read_text("utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    )
    names = {f"DISTSHOT_{field.name.upper()}" for field in dataclasses.fields(Settings)}
    for key in env:
        assert key in names or key.startswith(("DISTSHOT_WORKER_", "AWS_")), key
    load_settings(env={k: v for k, v in env.items() if k in names})
    used = set(re.findall(r"\$\{(\w+)\}", (SYSTEMD / "distshot-worker@.service").read_text()))
    assert used <= set(env), f"worker.env lacks {sorted(used - set(env))}"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
@pytest.mark.parametrize(
    ("name", "as_name"),
    [
        ("distshot-worker@.service", "distshot-worker@playwright.service"),
        ("distshot-serve.service", "distshot-serve.service"),
    ],
)
def test_systemd_analyze_verify(tmp_path: Path, name: str, as_name: str) -> None:
    """systemd's own parser: unknown keys, bad values. The unit's ExecStart names where the
    README installs distshot (/opt/distshot); here it points at this venv's distshot."""
    here = Path(sys.executable).with_name("distshot")
    text = (SYSTEMD / name).read_text("utf-8").replace("/opt/distshot/bin/distshot", str(here))
    (tmp_path / as_name).write_text(text, encoding="utf-8")
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(tmp_path / as_name)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 0 and not output, output


# -- Grafana -------------------------------------------------------------------------------

#: RabbitMQ's own, from its rabbitmq_prometheus plugin (per-object metrics).
RABBITMQ_GAUGES = {"rabbitmq_queue_messages_ready": {"queue", "vhost"}}


def live_families() -> list[Any]:
    """The metric families distshot really exports: a worker's and the service's, read
    from their registries (so the dashboard cannot name a metric that does not exist)."""
    from prometheus_client import CollectorRegistry

    from distshot.actors.metrics import define_worker_metrics
    from distshot.server.metrics import Metrics

    worker = CollectorRegistry()
    define_worker_metrics(worker)
    return [
        *worker._names_to_collectors.values(),
        *Metrics().registry._names_to_collectors.values(),
    ]


#: Labels Prometheus adds to every scraped series.
TARGET_LABELS = {"instance", "job", "namespace", "pod"}


def known_series() -> dict[str, set[str]]:
    """Every series name a query may use, with its labels."""
    series: dict[str, set[str]] = {}
    for metric in live_families():
        name, labels = metric._name, set(metric._labelnames)
        if metric._type == "counter":
            series[f"{name}_total"] = labels
        elif metric._type == "histogram":
            series[f"{name}_bucket"] = labels | {"le"}
            series[f"{name}_sum"] = labels
            series[f"{name}_count"] = labels
        else:
            series[name] = labels
    series.update(RABBITMQ_GAUGES)
    return series


def dashboard_queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) of every panel target and query variable."""
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            yield f"${variable['name']}", query["query"] if isinstance(query, dict) else query


def check_dashboard(dashboard: dict[str, Any]) -> None:
    series = known_series()
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
    for where, expr in dashboard_queries(dashboard):
        names = re.findall(r"\b((?:distshot|rabbitmq)_[a-z0-9_]+)", expr)
        assert names, f"{where}: no distshot metric in {expr!r}"
        labels: set[str] = set(TARGET_LABELS)
        for name in names:
            assert name in series, f"{where}: unknown metric {name}"
            labels |= series[name]
        used = set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)\s*\"", expr))
        for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
            used |= {label.strip() for label in group.split(",") if label.strip()}
        used |= set(re.findall(r"label_values\(\s*\w+\s*,\s*(\w+)\s*\)", expr))
        assert used <= labels, f"{where}: unknown labels {sorted(used - labels)} in {expr!r}"


def test_dashboard() -> None:
    check_dashboard(json.loads(DASHBOARD.read_text("utf-8")))


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: d["panels"][1]["targets"][0].__setitem__(
            "expr", "sum(rate(distshot_worker_shot_total[5m]))"
        ),
        lambda d: d["panels"][1]["targets"][0].__setitem__(
            "expr", "sum by (code) (rate(distshot_worker_shots_total[5m]))"
        ),
        lambda d: d["templating"]["list"].pop(0),
    ],
    ids=["misspelt metric", "unknown label", "no datasource variable"],
)
def test_dashboard_check_catches_breakage(damage: Callable[[dict[str, Any]], object]) -> None:
    dashboard = json.loads(DASHBOARD.read_text("utf-8"))
    damage(dashboard)
    with pytest.raises((AssertionError, KeyError)):
        check_dashboard(dashboard)
