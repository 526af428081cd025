"""The workspace commands against a real platform: ``models``, ``delete`` (confirmation, ``--yes``),
``login --name`` + ``--remote NAME``, ``whoami``, ``logout``."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from tests.e2e.conftest import KEY, PYTHON, Platform, last_json, write_truss


def test_models_then_delete_a_deployment_and_a_model(platform: Platform, tmp_path: Path) -> None:
    truss = write_truss(tmp_path / "t", "deletable", tmp_path / "loads")
    first = {"id": last_json(platform.cli("push", str(truss), "--promote", "--output", "json"))["deployment_id"]}
    (truss / "config.yaml").write_text((truss / "config.yaml").read_text() + "# second\n")
    second = {"id": last_json(platform.cli("push", str(truss), "--output", "json"))["deployment_id"]}
    listed = platform.stdout("models")
    assert "deletable" in listed
    assert first["id"] in listed
    refused = platform.run_cli("delete", second["id"])  # stdin is not a terminal: no silent delete
    assert refused.returncode == 1
    assert "--yes" in refused.stderr
    assert platform.http.get(f"/v1/deployments/{second['id']}").status_code == 200
    serving = platform.run_cli("delete", "--deployment", first["id"], "--yes")
    assert serving.returncode == 1
    assert "serves production" in serving.stderr
    platform.cli("delete", second["id"], "--yes")
    assert platform.http.get(f"/v1/deployments/{second['id']}").status_code == 404
    out = platform.cli("delete", "--model", "deletable", "--yes")
    assert "model 'deletable'" in out
    assert "deletable" not in platform.stdout("models")
    assert platform.http.post("/models/deletable/production/predict", json={}).status_code == 404


def test_named_remotes_whoami_and_logout(platform: Platform, tmp_path: Path) -> None:
    rc = tmp_path / "rc"
    env = {"TRESTLE_RC": str(rc), "TRESTLE_REMOTE_URL": "", "TRESTLE_API_KEY": ""}
    saved = platform.run_cli("login", "--remote", platform.url, "--api-key", KEY, "--name", "lab", env=env)
    assert saved.returncode == 0, saved
    assert "'lab'" in saved.stdout
    nothing = platform.run_cli("whoami", env=env)  # no default remote saved
    assert nothing.returncode == 1
    assert "trestle login" in nothing.stderr
    who = platform.run_cli("--remote", "lab", "whoami", env=env)
    assert who.returncode == 0, who
    assert platform.url in who.stdout
    assert "WORKSPACE_MANAGE_ALL" in who.stdout
    assert "[lab]" in who.stdout
    by_env = platform.run_cli("models", env={**env, "TRESTLE_REMOTE": "lab"})
    assert by_env.returncode == 0, by_env
    unknown = platform.run_cli("--remote", "nope", "models", env=env)
    assert unknown.returncode == 1
    assert "no remote named 'nope'" in unknown.stderr
    assert "lab" in unknown.stderr
    out = platform.run_cli("--remote", "lab", "logout", env=env)
    assert out.returncode == 0
    assert not rc.exists()
    after = platform.run_cli("--remote", "lab", "whoami", env=env)
    assert after.returncode == 1


def test_push_flags_from_truss_and_activate_wait(platform: Platform, tmp_path: Path) -> None:
    truss = write_truss(tmp_path / "t", "labelled", tmp_path / "loads")
    bad = platform.run_cli("push", str(truss), "--labels", "[1]")
    assert bad.returncode == 1
    assert "--labels must be a JSON object" in bad.stderr
    out = platform.cli(
        "push",
        str(truss),
        "--publish",
        "--deploy-timeout-minutes",
        "5",
        "--labels",
        '{"team": "search"}',
        "--output",
        "json",
    )
    dep_id = last_json(out)["deployment_id"]
    model_id = platform.deployment(dep_id)["model_id"]
    shown = platform.http.get(f"/v1/models/{model_id}/deployments/{dep_id}").json()
    assert shown["labels"] == {"team": "search"}
    assert shown["status"] == "ACTIVE"
    platform.cli("deactivate", "--deployment", dep_id)
    woke = platform.run_cli("activate", "--deployment", dep_id, "--wait")
    assert woke.returncode == 0, woke
    assert f"{dep_id} is ACTIVE" in woke.stdout
    platform.cli("delete", "--model", "labelled", "--yes")


def test_logs_with_baseten_filters(platform: Platform, tmp_path: Path) -> None:
    truss = write_truss(tmp_path / "t", "logged", tmp_path / "loads")
    dep_id = last_json(platform.cli("push", str(truss), "--output", "json"))["deployment_id"]
    found = platform.stdout("logs", "--deployment", dep_id, "--since", "10m", "--search", "status: (ACTIVE|DEPLOYING)")
    assert "status: ACTIVE" in found
    assert "[-] status: ACTIVE" in found  # a platform line: no replica
    assert "Model is ready" not in found
    ready = platform.stdout("logs", "--deployment", dep_id, "--min-level", "INFO", "--search", "ready", "-n", "1")
    assert len(ready.strip().splitlines()) == 1
    assert f"[{dep_id}-r" in ready  # the replica's own line, with its level
    assert platform.stdout("logs", "--deployment", dep_id, "--min-level", "ERROR").strip() == ""
    bad = platform.run_cli("logs", "--deployment", dep_id, "--since", "5x")
    assert bad.returncode == 1
    assert "--since takes a duration" in bad.stderr
    platform.cli("delete", "--model", "logged", "--yes")


def test_push_tail_streams_the_deployment_log(platform: Platform, tmp_path: Path) -> None:
    truss = write_truss(tmp_path / "t", "tailed", tmp_path / "loads")
    proc = subprocess.Popen(
        [PYTHON, "-m", "trestle", "push", str(truss), "--tail"],
        env={**platform.env, "PYTHONFAULTHANDLER": "1"},  # SIGABRT prints every thread's stack
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    seen: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            if "] status: ACTIVE" in line and "[platform]" in line:
                break
        assert any("[platform] status: ACTIVE" in line for line in seen), "".join(seen)
        assert proc.poll() is None  # still following after ACTIVE
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            rest, _ = proc.communicate(timeout=30)  # reading to the end: a full pipe would hold its exit
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)
            rest, _ = proc.communicate()
            raise AssertionError("Ctrl-C did not end `push --tail`:\n" + "".join(seen) + rest) from None
    assert proc.returncode in (0, 130), "".join(seen) + rest  # 130: it was still waiting for ACTIVE
    platform.cli("delete", "--model", "tailed", "--yes")


def test_a_terminated_replica_is_replaced(platform: Platform, tmp_path: Path) -> None:
    """``DELETE .../deployments/{d}/replicas/{id}`` (Baseten's terminate-replica): it stops now, another
    starts in its place (a second load), and the deployment keeps serving."""
    truss = write_truss(tmp_path / "t", "terminable", tmp_path / "loads")
    pushed = last_json(platform.cli("push", str(truss), "--output", "json"))
    dep_id = pushed["deployment_id"]
    view = platform.deployment(dep_id)
    old = view["replica_states"][0]["id"]
    url = f"/v1/models/{view['model_id']}/deployments/{dep_id}/replicas/{old}"
    response = platform.http.delete(url)
    assert response.status_code == 200 and response.json() == {"success": True}

    def replaced() -> bool:
        states = platform.deployment(dep_id)["replica_states"]
        return len(states) == 1 and states[0]["id"] != old and states[0]["ready"]

    platform.wait_for(replaced, timeout=60)
    answer = platform.http.post(pushed["predict_url"], json={"x": 1}, timeout=30).json()
    assert answer["loads"] == 2  # the new replica loaded the model again
    again = platform.http.delete(url)
    assert again.status_code == 404
    assert old in again.json()["error"]
    assert "terminated on request" in platform.logs(dep_id)


def test_a_followed_log_ends_when_the_platform_stops_and_does_not_hold_its_stop(
    platform: Platform, tmp_path: Path
) -> None:
    dep = last_json(
        platform.cli("push", "--output", "json", cwd=write_truss(tmp_path / "t", "followed", tmp_path / "l"))
    )
    proc = subprocess.Popen(
        [PYTHON, "-m", "trestle", "logs", "--deployment", dep["deployment_id"], "--tail"],
        env=platform.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert "[platform]" in proc.stdout.readline()  # following
        server = platform.proc
        assert server is not None
        platform.stop()
        assert server.returncode == 0
        assert "graceful shutdown exceeded" not in platform.log_path.read_text()
        rest = proc.stdout.read()
        assert proc.wait(10) == 1
        assert "closed the log stream (it is stopping)" in rest, rest
    finally:
        proc.kill()
        if platform.proc is None:
            platform.start()
