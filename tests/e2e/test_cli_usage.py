"""What a new user trips over in the CLI: the same two clear errors from every command (platform
unreachable, key refused), an explicit predict target that is always named, one way to name a model
in every command, and a build that shows its progress."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.conftest import Platform, free_port, last_json, write_truss
from tests.e2e.test_faults_and_builds import build_wheel

# Every command that talks to the platform, as a user would type it in a truss directory.
REMOTE_COMMANDS = [
    ["push"],
    ["push", "--watch"],
    ["watch"],
    ["promote"],
    ["promote", "abcdefgh"],
    ["deployments"],
    ["environments"],
    ["logs"],
    ["logs", "--tail"],
    ["scale", "--replicas", "2"],
    ["deactivate"],
    ["activate"],
    ["predict", "--remote", "-d", "{}"],
    ["predict", "some-model", "-d", "{}"],
]


def _ids(commands: list[list[str]]) -> list[str]:
    return [" ".join(command) for command in commands]


@pytest.fixture(scope="module")
def truss(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("usage")
    return write_truss(root / "t", "usage-model", root / "loads")


def _no_traceback(text: str) -> None:
    assert "Traceback" not in text, text
    assert len(text.strip().splitlines()) <= 3, text  # one clear message, not a dump


@pytest.mark.parametrize("command", REMOTE_COMMANDS, ids=_ids(REMOTE_COMMANDS))
def test_every_command_says_the_platform_cannot_be_reached(platform: Platform, truss: Path, command: list[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    result = platform.run_cli(*command, cwd=truss, env={"TRESTLE_REMOTE_URL": url}, timeout=60)
    assert result.returncode == 1, result
    assert f"cannot reach the platform at {url}" in result.stderr
    assert "TRESTLE_REMOTE_URL" in result.stderr  # where the URL came from
    _no_traceback(result.stderr)


@pytest.mark.parametrize("command", REMOTE_COMMANDS, ids=_ids(REMOTE_COMMANDS))
def test_every_command_says_the_key_is_refused(platform: Platform, truss: Path, command: list[str]) -> None:
    result = platform.run_cli(*command, cwd=truss, env={"TRESTLE_API_KEY": "wrong"}, timeout=60)
    assert result.returncode == 1, result
    assert f"missing or invalid API key for {platform.url}" in result.stderr, result.stderr
    assert "the key came from TRESTLE_API_KEY" in result.stderr
    assert "trestle login --remote" in result.stderr  # how to fix it
    assert "HTTP 401" not in result.stderr
    _no_traceback(result.stderr)


def test_a_refused_key_names_the_rc_file_it_came_from(platform: Platform, truss: Path, tmp_path: Path) -> None:
    rc = tmp_path / "rc"
    rc.write_text(f"[default]\nremote_url = {platform.url}\napi_key = stale\n")
    env = {"TRESTLE_RC": str(rc), "TRESTLE_REMOTE_URL": "", "TRESTLE_API_KEY": ""}
    result = platform.run_cli("deployments", cwd=truss, env=env)
    assert result.returncode == 1
    assert f"the key came from {rc}" in result.stderr
    login = platform.run_cli("login", "--remote", platform.url, "--api-key", "wrong", env=env)
    assert login.returncode == 1
    assert "missing or invalid API key" in login.stderr and "the key came from --api-key" in login.stderr
    _no_traceback(login.stderr)


def test_predict_calls_the_local_server_unless_told_otherwise(platform: Platform, tmp_path: Path) -> None:
    truss = write_truss(tmp_path / "p", "target-model", tmp_path / "loads")
    pushed = last_json(platform.cli("push", "--promote", "--output", "json", cwd=truss))
    # logged in (TRESTLE_REMOTE_URL/KEY set), yet a plain predict calls the local server, and says so
    local = platform.run_cli("predict", "-d", '{"a": 1}', cwd=truss)
    assert "POST http://127.0.0.1:8080/v1/models/model:predict (local" in local.stderr, local.stderr
    assert platform.url not in local.stderr + local.stdout
    # --remote: the platform; the URL on stderr, stdout is the body alone
    remote = platform.run_cli("predict", "--remote", "-d", '{"a": 1}', cwd=truss)
    assert remote.returncode == 0, remote.stderr
    assert json.loads(remote.stdout)["echo"] == {"a": 1}
    assert f"POST {platform.url}/models/{pushed['model_id']}/environments/production/predict" in remote.stderr
    # --url: that server, named
    direct = platform.run_cli("predict", "--url", pushed["predict_url"], "-d", "{}")
    assert f"POST {pushed['predict_url']}" in direct.stderr
    assert direct.returncode == 1  # no key sent to the gateway: a 401, with its status and URL
    assert f"HTTP 401 Unauthorized from POST {pushed['predict_url']}" in direct.stderr
    # ambiguous: refused
    both = platform.run_cli("predict", "--url", "http://127.0.0.1:1", "--remote", "-d", "{}")
    assert both.returncode == 2
    assert "cannot be combined with --remote" in both.stderr


def test_predict_error_answers_print_status_and_url(platform: Platform, tmp_path: Path) -> None:
    truss = write_truss(tmp_path / "e", "erring-model", tmp_path / "loads")
    platform.cli("push", "--promote", cwd=truss)
    result = platform.run_cli("predict", "erring-model", "-d", '{"sleep": "not a number"}')
    assert result.returncode == 1
    assert "HTTP 500 Internal Server Error from POST " in result.stderr, result.stderr
    assert "/models/" in result.stderr and "/environments/production/predict" in result.stderr
    assert "error" in json.loads(result.stdout)  # the body still reaches stdout


def test_a_model_is_named_the_same_way_in_every_command(platform: Platform, tmp_path: Path) -> None:
    truss = write_truss(tmp_path / "n", "named-everywhere", tmp_path / "loads")
    first = last_json(platform.cli("push", "--promote", "--output", "json", cwd=truss))["deployment_id"]
    elsewhere = tmp_path / "elsewhere"  # not a truss: the model must come from the argument or --model
    elsewhere.mkdir()
    # push (and watch) name the model with --model (--model-name still works)
    other = write_truss(tmp_path / "o", "config-name", tmp_path / "loads")
    second = last_json(platform.cli("push", "--model", "named-everywhere", "--output", "json", cwd=other))
    assert second["model_name"] == "named-everywhere"
    second_id = second["deployment_id"]
    watch = platform.run_cli("watch", "--model", "named-everywhere", cwd=other)
    assert "No development model found" in watch.stderr  # it looked up that model, which has none

    table: list[tuple[list[str], str]] = [
        (["deployments", "{m}"], second_id),
        (["environments", "{m}"], first),
        (["logs", "{m}"], "pushed artifact"),
        (["predict", "{m}", "-d", '{"via": "name"}'], '"via": "name"'),
        (["promote", "{m}"], f"{second_id} is now the production deployment"),
        (["scale", "{m}", "--replicas", "1"], f"{second_id} is ACTIVE"),
        (["promote", first], f"{first} is now the production deployment"),
        (["deactivate", "{m}"], f"{first} is INACTIVE"),
        (["activate", "{m}"], f"{first} is"),
    ]
    for command, expected in table:
        for form in ("argument", "option"):
            args = [part.replace("{m}", "named-everywhere") for part in command]
            if form == "option":
                if "{m}" not in command:
                    continue
                index = command.index("{m}")
                args[index : index + 1] = ["--model", "named-everywhere"]
            if command[0] == "activate" and form == "option":
                platform.wait_for(lambda: platform.deployment(first)["status"] == "ACTIVE")
                platform.cli("deactivate", first)
            out = platform.cli(*args, cwd=elsewhere)
            assert expected in out, (args, out)
            assert "Traceback" not in out

    # a deployment id and a model together must agree; different names are refused
    mismatch = platform.run_cli("logs", "--model", "target-model", "--deployment", first, cwd=elsewhere)
    assert mismatch.returncode == 1 and "belongs to model 'named-everywhere'" in mismatch.stderr
    differ = platform.run_cli("deployments", "named-everywhere", "--model", "other", cwd=elsewhere)
    assert differ.returncode == 2 and "name different models" in differ.stderr
    unknown = platform.run_cli("scale", "no-such-thing", "--replicas", "1", cwd=elsewhere)
    assert unknown.returncode == 1 and "no deployment or model 'no-such-thing'" in unknown.stderr


def test_push_shows_the_build_as_it_installs(platform: Platform, tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path, "shown")
    truss = tmp_path / "b"
    (truss / "model").mkdir(parents=True)
    (truss / "config.yaml").write_text(f"model_name: built-visibly\nrequirements:\n  - tinypkg @ {wheel.as_uri()}\n")
    (truss / "model" / "model.py").write_text("class Model:\n    def predict(self, x):\n        return x\n")
    result = platform.run_cli("push", cwd=truss)
    assert result.returncode == 0, result.stderr
    build = [line for line in result.stderr.splitlines() if line.startswith("  | ")]
    assert any("installing requirements" in line for line in build), result.stderr
    assert any("tinypkg" in line and "+" in line for line in build), result.stderr  # uv's own output
    assert "status: ACTIVE" in result.stderr
