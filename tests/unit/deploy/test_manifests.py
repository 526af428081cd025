"""Rendered manifests: golden files per flavour, schema validation (core kinds with
kubernetes-validate --strict, operator kinds with the vendored CRD schemas), and the semantic
rules schemas cannot express."""

from __future__ import annotations

import copy
import functools
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.unit.deploy.conftest import GOLDEN, check_golden
from trestle.config import LoadedConfig
from trestle.deploy import Flavor, Scaling, render, spec_for, to_yaml
from trestle.deploy.manifests import file_name, write

K8S_VERSION = "1.30.0"
SCHEMAS = Path(__file__).parent / "schemas"
CRD_SCHEMAS = {
    "Service/serving.knative.dev/v1": "knative-service.json",
    "InferenceService/serving.kserve.io/v1beta1": "kserve-inferenceservice.json",
    "RayService/ray.io/v1": "kuberay-rayservice.json",
}
DNS_1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
IMAGE = "registry.example.com/llama@sha256:" + "a" * 64


def _render(loaded: LoadedConfig, flavor: Flavor, environments: tuple[str, ...] = ("production",)) -> list[Any]:
    specs = [spec_for(loaded, env, image=IMAGE) for env in environments]
    return render(specs, flavor)


def _validate_core(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def _validate_pod_spec(pod_spec: dict[str, Any]) -> None:
    """An operator's embedded pod spec, checked as a core Pod with the strict schema."""
    _validate_core({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "embedded"}, "spec": pod_spec})


@functools.cache
def _validator(file: str) -> jsonschema.Draft4Validator:
    """The upstream CRD's schema (OpenAPI 3.0: JSON Schema draft 4 semantics), checked once when vendored."""
    return jsonschema.Draft4Validator(json.loads((SCHEMAS / file).read_text()))


def _validate_crd(doc: dict[str, Any]) -> None:
    _validator(CRD_SCHEMAS[f"{doc['kind']}/{doc['apiVersion']}"]).validate(doc)


def _validate(doc: dict[str, Any]) -> None:
    key = f"{doc['kind']}/{doc['apiVersion']}"
    if key in CRD_SCHEMAS:
        _validate_crd(doc)
    else:
        _validate_core(doc)


# --- golden files ----------------------------------------------------------------------------


@pytest.mark.parametrize("flavor", list(Flavor))
def test_each_flavor_matches_its_golden_file(gpu_truss: LoadedConfig, flavor: Flavor) -> None:
    envs = ("development", "production") if flavor is Flavor.PLAIN else ("production",)
    check_golden(f"{flavor.value}.yaml", to_yaml(_render(gpu_truss, flavor, envs)))


def test_a_cpu_truss_matches_its_golden_file(cpu_truss: LoadedConfig) -> None:
    check_golden("plain-cpu.yaml", to_yaml(render([spec_for(cpu_truss)], Flavor.PLAIN)))


@pytest.mark.parametrize("name", ["knative.yaml", "kserve.yaml", "rayservice.yaml"])
def test_the_operator_golden_files_pass_the_upstream_crd_schemas(name: str) -> None:
    """The files a reviewer reads, checked as they are against the operators' own vendored schemas."""
    docs = list(yaml.safe_load_all((GOLDEN / name).read_text()))
    custom = [doc for doc in docs if f"{doc['kind']}/{doc['apiVersion']}" in CRD_SCHEMAS]
    assert custom, name
    for doc in docs:
        _validate(doc)


def test_the_yaml_round_trips_to_the_rendered_objects(gpu_truss: LoadedConfig) -> None:
    docs = _render(gpu_truss, Flavor.RAYSERVICE)
    assert list(yaml.safe_load_all(to_yaml(docs))) == docs


# --- schema validation -----------------------------------------------------------------------


def test_plain_manifests_pass_kubernetes_validate_strict(gpu_truss: LoadedConfig, cpu_truss: LoadedConfig) -> None:
    docs = _render(gpu_truss, Flavor.PLAIN, ("development", "production")) + render([spec_for(cpu_truss)])
    assert [d["kind"] for d in docs[:5]] == [
        "ConfigMap",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    ]
    for doc in docs:
        _validate_core(doc)


def test_kubernetes_validate_strict_catches_what_it_should(gpu_truss: LoadedConfig) -> None:
    """The validator is not a rubber stamp: a wrong type and an unknown field both fail."""
    hpa = next(d for d in _render(gpu_truss, Flavor.PLAIN) if d["kind"] == "HorizontalPodAutoscaler")
    wrong = copy.deepcopy(hpa)
    wrong["spec"]["maxReplicas"] = "four"
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate_core(wrong)
    unknown = copy.deepcopy(hpa)
    unknown["spec"]["targetConcurrency"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate_core(unknown)


@pytest.mark.parametrize("flavor", [Flavor.KNATIVE, Flavor.KSERVE, Flavor.RAYSERVICE])
def test_operator_flavors_pass_their_crd_schema_and_embedded_pods_pass_strict(
    gpu_truss: LoadedConfig, cpu_truss: LoadedConfig, flavor: Flavor
) -> None:
    for loaded in (gpu_truss, cpu_truss):
        docs = _render(loaded, flavor)
        assert docs[0]["kind"] == "ConfigMap"
        _validate_core(docs[0])
        resource = docs[1]
        _validate_crd(resource)
        for pod in _pod_specs(resource):
            _validate_pod_spec(pod)


@pytest.mark.parametrize("flavor", [Flavor.KNATIVE, Flavor.KSERVE, Flavor.RAYSERVICE])
def test_crd_schemas_reject_misplaced_fields(gpu_truss: LoadedConfig, flavor: Flavor) -> None:
    resource = copy.deepcopy(_render(gpu_truss, flavor)[1])
    resource["spec"]["replicas"] = 3  # a Deployment field, not one of these kinds'
    with pytest.raises(jsonschema.ValidationError):
        _validate_crd(resource)


def _with_probe_ports(pod: dict[str, Any]) -> dict[str, Any]:
    """Knative (and KServe on it) probe the serving port when a probe names none, as a Pod must."""
    pod = copy.deepcopy(pod)
    for container in pod["containers"]:
        for probe in ("readinessProbe", "livenessProbe"):
            container[probe]["httpGet"]["port"] = container["ports"][0]["containerPort"]
    return pod


def _pod_specs(resource: dict[str, Any]) -> list[dict[str, Any]]:
    kind, spec = resource["kind"], resource["spec"]
    if kind == "Service" and resource["apiVersion"].startswith("serving.knative.dev"):
        template = spec["template"]["spec"]
        pod = {k: v for k, v in template.items() if k not in ("containerConcurrency", "timeoutSeconds")}
        return [_with_probe_ports(pod)]
    if kind == "InferenceService":
        extension = {"minReplicas", "maxReplicas", "scaleMetric", "scaleTarget", "containerConcurrency", "timeout"}
        return [_with_probe_ports({k: v for k, v in spec["predictor"].items() if k not in extension})]
    cluster = spec["rayClusterConfig"]
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    return [group["template"]["spec"] for group in groups]


# --- what a cluster would otherwise reject or get wrong ---------------------------------------


@pytest.mark.parametrize("flavor", list(Flavor))
def test_semantic_rules(gpu_truss: LoadedConfig, flavor: Flavor) -> None:
    docs = _render(gpu_truss, flavor, ("development", "production"))
    for doc in docs:
        name = doc["metadata"]["name"]
        assert len(name) <= 63 and DNS_1035.fullmatch(name), name
        labels = doc["metadata"]["labels"]
        assert labels["trestle.dev/environment"] in name
        assert labels["app.kubernetes.io/managed-by"] == "trestle"
    for doc in docs:
        if doc["kind"] == "Deployment":
            template = doc["spec"]["template"]
            assert doc["spec"]["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
            container = template["spec"]["containers"][0]
            port_names = {port["name"] for port in container["ports"]}
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                assert container[probe]["httpGet"]["port"] in port_names
            assert container["resources"]["limits"]["nvidia.com/gpu"] == 2
            assert "nvidia.com/gpu" not in container["resources"]["requests"]
        if doc["kind"] == "Service" and doc["apiVersion"] == "v1":
            pods = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == doc["metadata"]["name"]]
            assert doc["spec"]["selector"].items() <= pods[0]["spec"]["template"]["metadata"]["labels"].items()
        if doc["kind"] == "HorizontalPodAutoscaler":
            assert doc["spec"]["minReplicas"] >= 1  # the API server rejects 0 without an alpha gate
            assert doc["spec"]["scaleTargetRef"]["name"] == doc["metadata"]["name"]


def test_probes_follow_the_health_check_settings(gpu_truss: LoadedConfig) -> None:
    deployment = next(d for d in _render(gpu_truss, Flavor.PLAIN) if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["startupProbe"]["failureThreshold"] == 90  # 900 s / 10 s
    assert container["readinessProbe"]["failureThreshold"] == 2  # stop traffic after 20 s
    assert container["livenessProbe"]["failureThreshold"] == 30  # restart after 300 s
    assert container["livenessProbe"]["initialDelaySeconds"] == 60
    assert {container[p]["httpGet"]["path"] for p in ("startupProbe", "readinessProbe", "livenessProbe")} == {
        "/v1/models/model"
    }
    assert pod["terminationGracePeriodSeconds"] == 55  # drain 45 s + margin
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A10G"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert container["resources"] == {
        "requests": {"cpu": "4", "memory": "16Gi"},
        "limits": {"memory": "16Gi", "nvidia.com/gpu": 2},
    }


def test_secrets_are_references_never_values(gpu_truss: LoadedConfig) -> None:
    text = to_yaml(_render(gpu_truss, Flavor.PLAIN))
    assert "fallback" not in text  # a secret's default value never lands in a manifest
    deployment = next(d for d in _render(gpu_truss, Flavor.PLAIN) if d["kind"] == "Deployment")
    env = {item["name"]: item for item in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["LOG_LEVEL"] == {"name": "LOG_LEVEL", "value": "info"}
    assert env["USE_FLASH"] == {"name": "USE_FLASH", "value": "true"}
    assert env["TRUSS_SECRET_hf_access_token"] == {
        "name": "TRUSS_SECRET_hf_access_token",
        "valueFrom": {"secretKeyRef": {"name": "llama-chat-secrets", "key": "hf_access_token"}},
    }
    assert env["TRUSS_SECRET_optional_key"]["valueFrom"]["secretKeyRef"]["optional"] is True
    assert not any(d["kind"] == "Secret" for d in _render(gpu_truss, Flavor.PLAIN))


def test_knative_scaling_annotations_come_from_the_scaling_settings(gpu_truss: LoadedConfig) -> None:
    scaling = Scaling(min_replicas=0, max_replicas=5, concurrency_target=4, scale_down_delay=300)
    service = render([spec_for(gpu_truss, image=IMAGE, scaling=scaling)], Flavor.KNATIVE)[1]
    template = service["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    assert annotations["autoscaling.knative.dev/metric"] == "concurrency"
    assert annotations["autoscaling.knative.dev/target"] == "4"
    assert annotations["autoscaling.knative.dev/target-utilization-percentage"] == "70"
    assert annotations["autoscaling.knative.dev/min-scale"] == "0"  # scale to zero
    assert annotations["autoscaling.knative.dev/max-scale"] == "5"
    assert annotations["autoscaling.knative.dev/scale-down-delay"] == "300s"
    assert template["spec"]["containerConcurrency"] == 8  # predict_concurrency: the hard per-pod limit
    assert template["spec"]["timeoutSeconds"] == 120


def test_kserve_and_ray_scaling(gpu_truss: LoadedConfig) -> None:
    scaling = Scaling(min_replicas=0, max_replicas=3, concurrency_target=2)
    spec = spec_for(gpu_truss, image=IMAGE, scaling=scaling)
    predictor = render([spec], Flavor.KSERVE)[1]["spec"]["predictor"]
    assert (predictor["minReplicas"], predictor["maxReplicas"], predictor["scaleMetric"]) == (0, 3, "concurrency")
    assert predictor["scaleTarget"] == 2  # ceil(2 x 70%)
    ray = render([spec], Flavor.RAYSERVICE)[1]
    serve = yaml.safe_load(ray["spec"]["serveConfigV2"])
    deployment = serve["applications"][0]["deployments"][0]
    assert deployment["max_ongoing_requests"] == 8
    assert deployment["autoscaling_config"]["min_replicas"] == 0
    assert deployment["autoscaling_config"]["target_ongoing_requests"] == 1.4
    assert deployment["ray_actor_options"] == {"num_cpus": 4.0, "num_gpus": 2}
    workers = ray["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]
    assert (workers["minReplicas"], workers["maxReplicas"]) == (0, 3)
    assert workers["rayStartParams"] == {"num-cpus": "4", "num-gpus": "2"}
    assert workers["template"]["spec"]["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A10G"}


def test_environments_get_their_own_objects_and_defaults(cpu_truss: LoadedConfig) -> None:
    docs = render([spec_for(cpu_truss, env) for env in ("development", "production")], Flavor.KNATIVE)
    names = [d["metadata"]["name"] for d in docs]
    assert names == [
        "echo-development-environment",
        "echo-development",
        "echo-production-environment",
        "echo-production",
    ]
    assert json.loads(docs[0]["data"]["environment"]) == {"name": "development"}
    dev, prod = (
        docs[1]["spec"]["template"]["metadata"]["annotations"],
        docs[3]["spec"]["template"]["metadata"]["annotations"],
    )
    assert dev["autoscaling.knative.dev/min-scale"] == "0" and prod["autoscaling.knative.dev/min-scale"] == "1"
    assert docs[1]["spec"]["template"]["spec"]["containers"][0]["image"] == "echo:latest"


def test_names_stay_dns_safe_and_short(tmp_path: Path) -> None:
    from tests.support.server import write_truss
    from trestle.config import load_config

    loaded = load_config(write_truss(tmp_path / "x", "", "model_name: '9 Very_Long Name " + "x" * 80 + "'\n"))
    spec = spec_for(loaded, "Staging EU")
    assert len(spec.name) <= 63 and DNS_1035.fullmatch(spec.name)
    assert spec.name.endswith("-staging-eu") and spec.name.startswith("m-9-very-long-name-")
    for doc in render([spec], Flavor.PLAIN):
        _validate(doc)


def test_node_selector_override_and_unknown_accelerators(gpu_truss: LoadedConfig) -> None:
    spec = spec_for(gpu_truss, node_selector={"cloud.google.com/gke-accelerator": "nvidia-a10g"})
    pod = render([spec])[1]["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-a10g"}
    none = render([spec_for(gpu_truss, node_selector={})])[1]["spec"]["template"]["spec"]
    assert "nodeSelector" not in none and none["tolerations"]


def test_a_docker_server_truss_is_refused(tmp_path: Path) -> None:
    from tests.support.server import write_truss
    from trestle.config import load_config
    from trestle.errors import ConfigError

    config = (
        "docker_server:\n  start_command: ./serve\n  server_port: 8000\n  predict_endpoint: /p\n"
        "  readiness_endpoint: /r\n  liveness_endpoint: /l\n"
    )
    loaded = load_config(write_truss(tmp_path / "d", "", config))
    with pytest.raises(ConfigError, match="docker_server"):
        spec_for(loaded)


def test_bad_scaling_is_a_clear_error(cpu_truss: LoadedConfig) -> None:
    from trestle.errors import ConfigError

    with pytest.raises(ConfigError, match=r"max replicas \(1\) must be at least"):
        spec_for(cpu_truss, scaling=Scaling(min_replicas=3, max_replicas=1))


def test_write_gives_one_file_per_object(gpu_truss: LoadedConfig, tmp_path: Path) -> None:
    docs = _render(gpu_truss, Flavor.PLAIN)
    paths = write(docs, tmp_path / "out")
    assert [p.name for p in paths] == [file_name(d) for d in docs]
    assert paths[3].name == "llama-chat-production.horizontal-pod-autoscaler.yaml"
    assert [yaml.safe_load(p.read_text()) for p in paths] == docs
