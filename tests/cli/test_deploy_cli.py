"""`arkor deploy` and `arkor endpoints`, driven as a user drives them: train on a running plane,
deploy the newest job, chat with it through the official `openai` client, then manage it."""

from __future__ import annotations

import json
from pathlib import Path

import openai
import pytest

from tests.sdk.conftest import trained_project
from tests.utils.cli import CliRunner
from tests.utils.plane import running_plane
from tests.utils.ports import unused_arkor_port

__all__ = ["trained_project", "unused_arkor_port"]

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("unused_arkor_port")]

HELLO = [{"role": "user", "content": "say hello"}]


def test_deploy_then_chat_with_openai_then_manage_the_endpoint(
    trained_project: Path, cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_plane(tmp_path / "plane-home") as plane:
        monkeypatch.setenv("ARKOR_CLOUD_API_URL", plane.url)
        none_yet = cli("deploy")
        assert none_yet.exit_code == 2
        assert "no completed job to deploy yet" in none_yet.stderr

        assert cli("start").exit_code == 0

        shown = cli("deploy", "--slug", "cli-bot")
        assert shown.exit_code == 0, shown.stderr
        assert "shown this once" in shown.stdout
        assert "client = OpenAI(base_url=" in shown.stdout

        deployed = cli("deploy", "--slug", "json-bot", "--json")
        assert deployed.exit_code == 0, deployed.stderr
        (line,) = deployed.stdout.splitlines()
        answer = json.loads(line)
        assert answer["key"].startswith("arkd_") and answer["served"] is True
        base_url = answer["deployment"]["pathUrl"]
        client = openai.OpenAI(base_url=base_url, api_key=answer["key"])
        reply = client.chat.completions.create(model="x", messages=HELLO, max_tokens=4)
        assert reply.choices[0].message.content

        greedy = client.chat.completions.create(
            model="x", messages=HELLO, max_tokens=6, temperature=0
        )
        chatted = cli(
            "chat", "--endpoint", "json-bot", "--system", "", "-m", "say hello",
            "--temperature", "0", "--max-tokens", "6", "--json",
        )  # fmt: skip
        assert chatted.exit_code == 0, chatted.stderr
        assert json.loads(chatted.stdout)["answer"] == greedy.choices[0].message.content

        taken = cli("deploy", "--slug", "json-bot")
        assert taken.exit_code == 2 and "is taken" in taken.stderr

        listed = [json.loads(row) for row in cli("endpoints", "list", "--json").stdout.splitlines()]
        assert {row["slug"] for row in listed} == {"cli-bot", "json-bot"}

        keys = cli("endpoints", "keys", "list", "json-bot", "--json").stdout.splitlines()
        assert len(keys) == 1 and answer["key"] not in keys[0]

        assert cli("endpoints", "update", "json-bot", "--disable").exit_code == 0
        with pytest.raises(openai.PermissionDeniedError):
            client.chat.completions.create(model="x", messages=HELLO, max_tokens=2)
        assert cli("endpoints", "update", "json-bot", "--enable").exit_code == 0

        details = json.loads(cli("endpoints", "show", "json-bot", "--json").stdout)
        assert details["runs"][0]["status"] == "ok"

        key_id = json.loads(keys[0])["id"]
        assert cli("endpoints", "keys", "revoke", "json-bot", key_id).exit_code == 0
        with pytest.raises(openai.AuthenticationError):
            client.chat.completions.create(model="x", messages=HELLO, max_tokens=2)

        refused = cli("endpoints", "delete", "json-bot")
        assert refused.exit_code == 2 and "--yes" in refused.stderr
        assert cli("endpoints", "delete", "json-bot", "--yes").exit_code == 0
        with pytest.raises(openai.NotFoundError):
            client.models.list()
