"""The README as a newcomer follows it, word for word, on a fresh clone.

Every ``checkpoint-edge`` command in the README's shell blocks is written one
way (the virtual environment active, as the README says), parses, and those
that need no broker run as written: on the bundled samples, on a simulated
kiosk's store and on the local ingest's database, both where the simulation
and the local ingest keep them (``HOME`` is the test's). The set-up scripts pass
shellcheck, and a second ``tools/setup`` installs nothing.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tomllib
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from edge import cli
from edge import config as config_mod
from edge.central.db import Checked, open_db
from edge.core.model import Credential, PassageDraft
from edge.scan.idcard import IdCard
from edge.store.outbox import Outbox

from .conftest import REPO
from .test_central_cli import passage

README = (REPO / "README.md").read_text(encoding="utf-8")
VENV_BIN = REPO / ".venv" / "bin"
# What runs here as written: no broker, no Raspberry Pi, no central server.
OFFLINE = {"verify", "keys", "issue", "outbox", "trace", "rules", "report"}
SCRIPTS = [REPO / "tools" / n for n in ("setup", "demo", "test")] + [REPO / ".ci" / "run"]


def shell_blocks(text: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", text, flags=re.DOTALL)


def commands(text: str) -> list[str]:
    """Every command line of the shell blocks (continuations joined, comments cut)."""
    found = []
    for block in shell_blocks(text):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" # ", 1)[0].strip()  # noqa: PLW2901 - the line, tidied
            if line:
                found.append(line)
    return found


def ours(text: str) -> list[str]:
    return [c for c in commands(text) if "checkpoint-edge " in c.split("#")[0][:40]]


def test_every_command_is_written_one_way_with_the_venv_active() -> None:
    invocations = ours(README)
    assert len(invocations) >= 12
    assert all(c.startswith("checkpoint-edge ") for c in invocations), [
        c for c in invocations if not c.startswith("checkpoint-edge ")
    ]
    assert ".venv/bin/checkpoint-edge" not in README
    activate = README.index("source .venv/bin/activate")
    first = README.index("\ncheckpoint-edge ")
    assert activate < first, "the README must say how to activate the venv before using it"


def test_every_readme_command_parses() -> None:
    for command in ours(README):
        argv = shlex.split(command)[1:]
        try:
            cli._parser().parse_args(argv)
        except SystemExit as exc:
            pytest.fail(f"the README's {command!r} does not parse (exit {exc.code})")


def simulated_kiosk_and_ingest(home: Path) -> None:
    """What `checkpoint-edge run` and `checkpoint-edge ingest` leave in ``home`` after a
    while: a kiosk store with passages, and the local ingest's database."""
    state = home / ".local" / "state" / "checkpoint-edge"
    store = Outbox(state / "simulation", "sim-lane-1", "simulation")
    born, issued = date(1990, 5, 17), date(2022, 1, 1)
    card = IdCard("001190099999", "", "Tran Thi Mau", born, "F", "", issued, 7)
    ts = datetime(2026, 11, 26, 8, tzinfo=UTC)
    cred = Credential.from_raw("id_card", b"card", valid=True, claims=card)
    store.append(PassageDraft(ts, "approved", "officer", (), (cred,), "officer"))
    store.close()
    db = open_db(f"sqlite:///{state / 'central' / 'passages.db'}")
    db.store(
        [
            Checked.of(passage("sim-lane-1", 1, "2026-11-26T08:00:00.000Z", "simulation",
                               id_number="001190099999", name="Tran Thi Mau")),
            Checked.of(passage("sim-lane-1", 2, "2026-11-26T08:01:00.000Z", "simulation")),
        ]
    )  # fmt: skip
    db.close()


def test_the_offline_commands_run_as_written(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    simulated_kiosk_and_ingest(home)
    scratch = tmp_path / "scratch"
    env = {
        **os.environ,
        "HOME": str(home),
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
        "VIRTUAL_ENV": str(REPO / ".venv"),
    }
    ran = []
    for command in ours(README):
        if shlex.split(command)[1] not in OFFLINE:
            continue
        line = command.replace("/tmp/", f"{scratch}/")  # this test's own scratch folder
        run = subprocess.run(
            ["bash", "-c", line], cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
            check=False,
        )  # fmt: skip
        assert run.returncode == 0, f"{command}\n{run.stderr}"
        assert run.stdout.strip() or list(scratch.glob("*")), f"{command}: no output"
        assert "(0 passages)" not in run.stdout, f"{command}: found nothing"
        ran.append(shlex.split(command)[1])
    assert set(ran) >= OFFLINE


def test_the_local_ingest_default_is_the_trace_default() -> None:
    """``ingest`` without -c and ``trace`` without --database meet in one file, under HOME."""
    doc = tomllib.loads(cli.local_ingest_config_path().read_text())
    assert doc["mqtt"] == {"host": "localhost", "port": 1883}
    assert doc["ingest"]["database"] == (
        "sqlite:///~/.local/state/checkpoint-edge/central/passages.db"
    )
    cfg = config_mod.load_as(cli.local_ingest_config_path(), config_mod.IngestFile)
    assert cfg.ingest.database == (
        f"sqlite:///{Path.home() / '.local/state/checkpoint-edge/central/passages.db'}"
    )


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(REPO)))
def test_the_setup_scripts_pass_shellcheck(script: Path) -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (tools/setup --test installs it)")
    run = subprocess.run([shellcheck, str(script)], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout


def test_a_second_setup_installs_nothing() -> None:
    """tools/test ran tools/setup --test before this suite: nothing is left to do, so a
    newcomer's second `tools/demo` starts at once, without pip or its warnings."""
    run = subprocess.run(
        [str(REPO / "tools" / "setup"), "--test"],
        cwd=REPO, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert (run.stdout + run.stderr).strip() == ""
    stamp = (REPO / ".venv" / ".checkpoint-edge-setup").read_text().split()
    assert stamp[1] == "test"


def test_the_licence_is_an_spdx_expression() -> None:
    """setuptools >= 77 takes `license` as an SPDX string (a table is deprecated and
    printed a long warning at every install)."""
    doc = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert doc["project"]["license"] == "Apache-2.0"
    assert "setuptools>=77" in doc["build-system"]["requires"]
