"""``trestle k8s render`` and ``trestle image build`` as a user runs them, with stub executables on
PATH that record how they were called."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from tests.support.server import write_truss
from tests.unit.deploy.conftest import GPU_CONFIG, MODEL
from trestle.cli.main import cli


def _stub(bin_dir: Path, name: str, record: Path, status: int = 0, *, stdin: bool = False) -> None:
    """An executable that writes its argv (one per line), and with ``stdin`` what it read, to ``record``."""
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / name
    read = f'echo "--- stdin" >> {record}\n/bin/cat >> {record}\n' if stdin else ""
    path.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {record}\n{read}exit {status}\n')
    path.chmod(0o755)


@pytest.fixture
def truss(tmp_path: Path) -> Path:
    return write_truss(tmp_path / "llama", MODEL, GPU_CONFIG)


def test_render_writes_yaml_to_stdout(truss: Path) -> None:
    result = CliRunner().invoke(cli, ["k8s", "render", str(truss), "--image", "reg/llama:1"])
    assert result.exit_code == 0, result.output
    docs = list(yaml.safe_load_all(result.stdout))
    assert [d["kind"] for d in docs] == [
        "ConfigMap",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    ]
    assert docs[1]["spec"]["template"]["spec"]["containers"][0]["image"] == "reg/llama:1"


def test_render_options_reach_the_manifests(truss: Path, tmp_path: Path) -> None:
    args = [
        "k8s", "render", str(truss), "--flavor", "knative", "-e", "development", "-e", "production",
        "--min-replicas", "0", "--max-replicas", "4", "--concurrency-target", "2", "-n", "models",
        "--secret-name", "shared-secrets", "--node-selector", "pool=gpu", "-o", str(tmp_path / "out"),
    ]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == [
        "llama-chat-development-environment.config-map.yaml",
        "llama-chat-development.service.yaml",
        "llama-chat-production-environment.config-map.yaml",
        "llama-chat-production.service.yaml",
    ]
    service = yaml.safe_load((tmp_path / "out" / "llama-chat-production.service.yaml").read_text())
    assert service["metadata"]["namespace"] == "models"
    template = service["spec"]["template"]
    assert template["metadata"]["annotations"]["autoscaling.knative.dev/max-scale"] == "4"
    assert template["metadata"]["annotations"]["autoscaling.knative.dev/min-scale"] == "0"
    assert template["spec"]["nodeSelector"] == {"pool": "gpu"}
    env = template["spec"]["containers"][0]["env"]
    assert {e["valueFrom"]["secretKeyRef"]["name"] for e in env if "valueFrom" in e} == {"shared-secrets"}


def test_plain_says_that_hpa_cannot_scale_to_zero(truss: Path) -> None:
    result = CliRunner().invoke(cli, ["k8s", "render", str(truss), "-e", "development"])
    assert result.exit_code == 0
    assert "cannot scale to zero" in result.stderr
    hpa = list(yaml.safe_load_all(result.stdout))[3]
    assert hpa["spec"]["minReplicas"] == 1


def test_render_errors_are_clear(truss: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["k8s", "render", str(truss), "--min-replicas", "3", "--max-replicas", "2"])
    assert result.exit_code == 1 and "max replicas (2) must be at least" in result.output
    result = CliRunner().invoke(cli, ["k8s", "render", str(truss), "--node-selector", "nokey"])
    assert result.exit_code == 2 and "expected KEY=VALUE" in result.output
    bad = write_truss(tmp_path / "bad", MODEL, "resources:\n  accelerator: TPU\n")
    result = CliRunner().invoke(cli, ["k8s", "render", str(bad)])
    assert result.exit_code == 1 and "unsupported accelerator type 'TPU'" in result.output


def test_apply_pipes_the_manifests_to_kubectl_server_side(
    truss: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = tmp_path / "kubectl.txt"
    _stub(tmp_path / "bin", "kubectl", record, stdin=True)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    result = CliRunner().invoke(cli, ["k8s", "render", str(truss), "--apply", "-n", "models"])
    assert result.exit_code == 0, result.output
    argv, _, stdin = record.read_text().partition("--- stdin\n")
    assert argv.splitlines() == [
        "apply",
        "--server-side",
        "--field-manager=trestle",
        "--namespace",
        "models",
        "-f",
        "-",
    ]
    assert [d["kind"] for d in yaml.safe_load_all(stdin)][1] == "Deployment"
    assert result.stdout == ""  # applied, not printed


def test_apply_failure_and_missing_kubectl(truss: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _stub(tmp_path / "bin", "kubectl", tmp_path / "r.txt", status=3, stdin=True)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    result = CliRunner().invoke(cli, ["k8s", "render", str(truss), "--apply"])
    assert result.exit_code == 1 and "kubectl apply failed with exit status 3" in result.output
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    result = CliRunner().invoke(cli, ["k8s", "render", str(truss), "--apply"])
    assert result.exit_code == 1 and "kubectl is not on PATH" in result.output


def test_image_build_without_any_builder_says_so(truss: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    result = CliRunner().invoke(cli, ["image", "build", str(truss), "--tag", "m:1", "--trestle-from-index"])
    assert result.exit_code == 1
    assert "no image builder found: install docker / podman / buildah" in result.output


def test_image_build_prefers_docker_and_honours_builder(
    truss: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("docker", "podman"):
        _stub(tmp_path / "bin", name, tmp_path / f"{name}.txt")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    result = CliRunner().invoke(cli, ["image", "build", str(truss), "-t", "m:1", "--trestle-from-index"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "docker.txt").read_text().startswith("build\n-t\nm:1\n-f\n")
    assert not (tmp_path / "podman.txt").exists()
    result = CliRunner().invoke(
        cli, ["image", "build", str(truss), "-t", "m:2", "--builder", "podman", "--platform", "linux/arm64",
              "--trestle-from-index"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    argv = (tmp_path / "podman.txt").read_text().splitlines()
    assert argv[:3] == ["build", "-t", "m:2"] and argv[5:7] == ["--platform", "linux/arm64"]
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    result = CliRunner().invoke(cli, ["image", "build", str(truss), "-t", "m:3", "--builder", "buildah"])
    assert result.exit_code == 1 and "install buildah" in result.output


def test_build_context_command(truss: Path, tmp_path: Path) -> None:
    out = tmp_path / "ctx"
    result = CliRunner().invoke(cli, ["image", "build-context", str(truss), str(out), "--trestle-from-index"])
    assert result.exit_code == 0, result.output
    assert "FROM nvidia/cuda:12.8.1-runtime-ubuntu22.04" in result.stdout
    assert (out / "Dockerfile").is_file()
