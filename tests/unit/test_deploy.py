"""The deployment files: they parse, they use only the metrics the service exports, the alerts
pass their promtool unit tests, and the manifests keep the promises of the README."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.readme import documented_metrics

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def _catalogue():
    names = documented_metrics()
    # the README's catalogue names the metrics the code registers (and more than none)
    assert {"capi_results_total", "capi_state_full", "capi_parked_bytes"} <= names
    return names


def _metric_names(expr):
    """The capi_* series an expression reads, as catalogue names."""
    found = set()
    for name in re.findall(r"capi_[a-z_]+", expr):
        found.add(re.sub(r"_(bucket|sum|count)$", "", name))
    return found


def test_every_yaml_file_parses():
    files = sorted(DEPLOY.rglob("*.yaml")) + sorted(DEPLOY.rglob("*.yml"))
    names = {p.relative_to(DEPLOY).as_posix() for p in files}
    assert {
        "compose.yaml",
        "k8s/statefulset.yaml",
        "k8s/configmap.yaml",
        "prometheus/alerts.yaml",
        "prometheus/alerts_test.yaml",
        "prometheus/signal-alerts.yaml",
        "prometheus/signal-alerts_test.yaml",
        "prometheus/prometheus.yml",
    } <= names
    for path in files:
        documents = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        assert documents, path


def test_dashboard_queries_use_only_exported_metrics():
    dashboard = json.loads((DEPLOY / "grafana" / "dashboard.json").read_text())
    catalogue = _catalogue()
    rows = [p["title"] for p in dashboard["panels"] if p["type"] == "row"]
    assert rows == ["Flow", "Meta", "Retries", "Kafka", "Tables", "Local state", "Signal health"]
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    used = set()
    for expr in exprs:
        names = _metric_names(expr)
        assert names, expr
        assert names <= catalogue, (expr, names - catalogue)
        used |= names
    # the dashboard shows most of what the service exports
    assert len(used) >= len(catalogue) - 2, catalogue - used


def test_alert_rules_use_only_exported_metrics():
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yaml").read_text())
    alerts = {r["alert"]: r["expr"] for g in rules["groups"] for r in g["rules"]}
    assert set(alerts) == {
        "CapiConsumerLagGrowing",
        "CapiNoSuccessfulSend",
        "CapiHighFailureRatio",
        "CapiMetaAuthErrors",
        "CapiDeadLetters",
        "CapiSchemaRegistryDown",
        "CapiParkedEventsOld",
        "CapiCircuitBreakerOpen",
        "CapiStateVolumeFull",
        "CapiParkedBudgetReached",
        "CapiConsumerClockBehind",
    }
    for expr in alerts.values():
        assert _metric_names(expr) <= _catalogue(), expr


def test_dashboard_panels_have_one_id_each_and_do_not_overlap():
    panels = json.loads((DEPLOY / "grafana" / "dashboard.json").read_text())["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    taken: dict[tuple[int, int], str] = {}
    for panel in panels:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in taken, (panel["title"], taken.get((x, y)))
                taken[(x, y)] = panel["title"]


def test_the_signal_alert_is_off_by_default():
    rules = yaml.safe_load((DEPLOY / "prometheus" / "signal-alerts.yaml").read_text())
    alerts = {r["alert"]: r for g in rules["groups"] for r in g["rules"]}
    assert set(alerts) == {"CapiDatasetFellBelowMetaMinimum"}
    assert _metric_names(alerts["CapiDatasetFellBelowMetaMinimum"]["expr"]) <= _catalogue()
    loaded = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())["rule_files"]
    assert [Path(f).name for f in loaded] == ["alerts.yaml"]
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert not any("signal-alerts" in m for m in compose["services"]["prometheus"]["volumes"])


@pytest.mark.parametrize(
    ("rules", "tests"),
    [("alerts.yaml", "alerts_test.yaml"), ("signal-alerts.yaml", "signal-alerts_test.yaml")],
)
def test_alerts_pass_their_promtool_unit_tests(rules, tests):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not found: `make test` installs it (Debian package prometheus)")
    directory = DEPLOY / "prometheus"
    check = subprocess.run(
        [promtool, "check", "rules", rules], cwd=directory, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    test = subprocess.run(
        [promtool, "test", "rules", tests],
        cwd=directory,
        capture_output=True,
        text=True,
    )
    assert test.returncode == 0, test.stdout + test.stderr


def test_dockerfile_is_slim_and_non_root():
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim$", text, re.MULTILINE)
    users = re.findall(r"^USER (\S+)$", text, re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
    assert "HEALTHCHECK" in text and "/healthz" in text
    assert 'ENTRYPOINT ["capi-consumer"]' in text


def test_statefulset_probes_secrets_state_and_disruption_budget():
    deployment = yaml.safe_load((DEPLOY / "k8s" / "statefulset.yaml").read_text())
    assert deployment["kind"] == "StatefulSet"  # stable CAPI_INSTANCE_ID and state per pod
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {p["containerPort"] for p in container["ports"]} == {9464}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["credentials"]["mountPath"] == "/var/run/secrets/capi"
    assert mounts["credentials"]["readOnly"] is True
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "secret" in volumes["credentials"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    drain = float(_configmap()["CAPI_DRAIN_TIMEOUT_S"])
    assert pod["terminationGracePeriodSeconds"] >= drain + 30  # the drain, then the last commit
    assert mounts["state"]["mountPath"] == "/var/lib/capi/state"  # the image's CAPI_STATE_DIR
    assert "state" not in volumes  # not an emptyDir: a volume claim per pod keeps the outbox
    claims = {c["metadata"]["name"] for c in deployment["spec"]["volumeClaimTemplates"]}
    assert claims == {"state"}
    service = yaml.safe_load((DEPLOY / "k8s" / "service.yaml").read_text())
    assert deployment["spec"]["serviceName"] == service["metadata"]["name"]
    instance = next(e for e in container["env"] if e["name"] == "CAPI_INSTANCE_ID")
    assert instance["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    pdb = yaml.safe_load((DEPLOY / "k8s" / "pdb.yaml").read_text())
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]
    hpa = yaml.safe_load((DEPLOY / "k8s" / "hpa.yaml").read_text())
    assert hpa["spec"]["scaleTargetRef"]["kind"] == "StatefulSet"
    metric = hpa["spec"]["metrics"][0]["external"]["metric"]["name"]
    assert metric in _catalogue()


def test_compose_runs_the_full_stack():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"kafka", "schema-registry", "capi-consumer", "prometheus", "grafana"} <= set(services)
    assert "controller" in services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]  # KRaft
    grafana_mounts = " ".join(services["grafana"]["volumes"])
    assert "dashboard.json" in grafana_mounts and "provisioning" in grafana_mounts
    for mount in services["prometheus"]["volumes"] + services["grafana"]["volumes"]:
        source = mount.split(":", 1)[0]
        assert (DEPLOY / source).exists(), source
    # the topics come from the service's own plan, not a copy of it in shell
    topics = services["topics"]
    assert topics["build"] == services["capi-consumer"]["build"]
    assert topics["command"][:2] == ["topics", "create"]
    assert services["capi-consumer"]["depends_on"]["topics"] == {
        "condition": "service_completed_successfully"
    }


def _configmap() -> dict[str, str]:
    data: dict[str, str] = yaml.safe_load((DEPLOY / "k8s" / "configmap.yaml").read_text())["data"]
    return data
