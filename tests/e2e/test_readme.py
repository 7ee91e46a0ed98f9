"""The README's promises: its curl examples work as written, its tables match the code."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from shared.settings import Settings
from tests.conftest import ROOT
from tests.e2e.conftest import Stack

README = (ROOT / "README.md").read_text()


def bash_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", README, flags=re.S)


def test_readme_starts_with_the_two_commands() -> None:
    blocks = bash_blocks()
    assert blocks[0].strip() == "make up"
    assert blocks[1].strip() == "make test"
    ci = (ROOT / ".ci" / "run").read_text()
    assert ci.strip().splitlines()[-1] == "make test"


def test_every_setting_is_in_the_configuration_table() -> None:
    for name in Settings.model_fields:
        assert f"| `{name.upper()}` |" in README, name


@pytest.mark.e2e
def test_curl_examples_work_verbatim(stack: Stack) -> None:
    example = next(b for b in bash_blocks() if "curl" in b)
    assert example.startswith("BASE=http://127.0.0.1:8000\n")
    script = example.replace("BASE=http://127.0.0.1:8000", f"BASE={stack.url()}", 1)
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert '"name":"Trip to Paris"' in out
    assert "event: done" in out
    done = json.loads(out.split("event: done\ndata: ", 1)[1].split("\n", 1)[0])
    assert done["status"] == "done"
    assert "Paris" in done["message"]["message"]
    # The last command deleted the chat and printed it (curl adds no newline).
    assert re.search(r'\{"id":"[0-9a-f-]{36}","name":"Trip to Paris"[^{}]*\}$', out.rstrip())
