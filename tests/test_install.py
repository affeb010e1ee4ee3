"""deploy/install.sh as an administrator runs it: shellcheck, a dry run that
changes nothing, real installs into temporary roots (``--root DIR --no-deps``:
the venv, the package, the user and groups, the config, the enabled unit), a
second run that changes nothing, and usage errors.

Nothing is mocked: the script runs useradd, python3 -m venv, pip and
systemctl for real, against a directory tree instead of this machine.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sysconfig
from pathlib import Path

import pytest

from .conftest import REPO

SCRIPT = REPO / "deploy" / "install.sh"
EXAMPLE = REPO / "deploy" / "config.example.toml"
UNIT = REPO / "systemd" / "checkpoint-edge.service"
VENV = "opt/checkpoint-edge/venv"
# This checkout's venv: its checkpoint-edge checks configs; its site-packages
# give the installed package (built with --no-deps) its dependencies.
DEV_CLI = REPO / ".venv" / "bin" / "checkpoint-edge"
DEV_SITE = sysconfig.get_path("purelib")
# What an install on this machine would create (the dry run must not).
SENTINELS = [
    Path("/opt/checkpoint-edge"),
    Path("/etc/checkpoint-edge"),
    Path("/etc/systemd/system/checkpoint-edge.service"),
    Path("/usr/local/bin/checkpoint-edge"),
    Path("/var/lib/checkpoint-edge"),
]
TIMEOUT = 180  # seconds; an install takes a few

needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="useradd, chown and systemctl --root need root"
)


def install(*args: str | Path, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """Run the installer to completion; its output, both streams, as text."""
    return subprocess.run(
        [*prefix, str(SCRIPT), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def installed(*args: str | Path) -> str:
    result = install(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def listing(root: Path) -> dict[str, tuple[object, ...]]:
    """Every path under root with its type, mode, owner, size, mtime and link target."""
    found: dict[str, tuple[object, ...]] = {}
    for path in [root, *root.rglob("*")]:
        st = path.lstat()
        link = os.readlink(path) if path.is_symlink() else None
        found[str(path.relative_to(root))] = (
            stat.filemode(st.st_mode),
            st.st_uid,
            st.st_gid,
            st.st_size if not stat.S_ISDIR(st.st_mode) else 0,
            st.st_mtime_ns,
            link,
        )
    return found


def db_entry(root: Path, db: str, name: str) -> list[str]:
    for line in (root / "etc" / db).read_text().splitlines():
        fields = line.split(":")
        if fields[0] == name:
            return fields
    raise AssertionError(f"no {name} in {root}/etc/{db}")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A temporary root installed into once; its path and the installer's output."""
    if os.geteuid() != 0:
        pytest.skip("useradd, chown and systemctl --root need root")
    target = tmp_path_factory.mktemp("root")
    return target, installed("--root", target, "--no-deps")


# -- (a) ---------------------------------------------------------------------


def test_shellcheck_passes() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip(
            "shellcheck is not installed "
            "(tools/setup --test installs it: apt-get install shellcheck)"
        )
    result = subprocess.run(
        [shellcheck, str(SCRIPT)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_script_is_executable_bash_strict() -> None:
    assert os.access(SCRIPT, os.X_OK)
    text = SCRIPT.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "\nset -euo pipefail\n" in text


# -- (b) ---------------------------------------------------------------------


def _as_nobody() -> tuple[str, ...]:
    """A command prefix that runs as an unprivileged user (or nothing if we are one)."""
    if os.geteuid() != 0:
        return ()
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is needed to drop root")
    return (setpriv, "--reuid=65534", "--regid=65534", "--clear-groups")


def _user_exists() -> bool:
    getent = subprocess.run(
        ["getent", "passwd", "checkpoint-edge"], capture_output=True, check=False
    )
    return getent.returncode == 0


def test_dry_run_prints_every_step_and_changes_nothing() -> None:
    before = {path: path.exists() for path in SENTINELS}
    user_before = _user_exists()
    result = install("--dry-run")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for heading in (
        "apt packages",
        "service user",
        "virtual environment",
        "voices",
        "config",
        "systemd unit",
        "enable",
    ):
        assert f"== {heading}" in out
    if not before[Path("/opt/checkpoint-edge")]:
        assert (
            "would run: /usr/bin/python3 -m venv --system-site-packages /opt/checkpoint-edge/venv"
            in out
        )
        assert "pip install" in out
    assert (
        "would run: /opt/checkpoint-edge/venv/bin/checkpoint-edge lang voices "
        "--out /usr/local/share/checkpoint-edge/voices\n" in out
    )
    if not before[Path("/etc/checkpoint-edge")]:
        assert "would write: /etc/checkpoint-edge/config.toml (mode 0640" in out
    if not before[Path("/etc/systemd/system/checkpoint-edge.service")]:
        assert "would write: /etc/systemd/system/checkpoint-edge.service" in out
        assert "would run: systemctl enable checkpoint-edge.service" in out
    if not user_before:
        assert "would run: useradd --system --user-group" in out
    assert "nothing was changed" in out
    assert {path: path.exists() for path in SENTINELS} == before
    assert _user_exists() == user_before


def test_dry_run_into_a_root_writes_nothing_there(tmp_path: Path) -> None:
    out = installed("--dry-run", "--root", tmp_path, "--no-deps")
    assert "skipped: --root" in out
    assert f"would run: groupadd --prefix {tmp_path} --system gpio" in out
    assert f"would write: {tmp_path}/etc/checkpoint-edge/config.toml" in out
    assert f"would run: systemctl --root={tmp_path} enable checkpoint-edge.service" in out
    assert list(tmp_path.iterdir()) == []


def test_dry_run_works_without_root_and_a_real_run_refuses() -> None:
    nobody = _as_nobody()
    dry = install("--dry-run", prefix=nobody)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "would run:" in dry.stdout
    real = install(prefix=nobody)
    assert real.returncode == 1
    assert real.stderr == (
        "install.sh: must be run as root (try sudo, or --dry-run to see what it would do)\n"
    )
    assert real.stdout == ""


# -- (c) ---------------------------------------------------------------------


@needs_root
def test_installs_the_venv_and_package(root: tuple[Path, str]) -> None:
    target, out = root
    venv = target / VENV
    assert "include-system-site-packages = true" in (venv / "pyvenv.cfg").read_text()
    assert f"installed checkpoint-edge 0.1.0 into {venv}" in out
    assert "--no-deps: the Python dependencies are not installed" in out
    # The package alone imports (nothing at import time needs a dependency) ...
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    bare = subprocess.run(
        [venv / "bin" / "python", "-c", "import edge; print(edge.__version__, edge.__file__)"],
        capture_output=True,
        text=True,
        cwd=target,
        env=env,
        timeout=60,
        check=True,
    )
    version, where = bare.stdout.split()
    assert version == "0.1.0"
    assert where.startswith(f"{venv}/lib/")
    # ... and with the dependencies it was not given, its command runs.
    env["PYTHONPATH"] = DEV_SITE
    cli = subprocess.run(
        [venv / "bin" / "checkpoint-edge", "--version"],
        capture_output=True,
        text=True,
        cwd=target,
        env=env,
        timeout=60,
        check=False,
    )
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout == "checkpoint-edge 0.1.0\n"
    link = target / "usr/local/bin/checkpoint-edge"
    assert os.readlink(link) == "/opt/checkpoint-edge/venv/bin/checkpoint-edge"


@needs_root
def test_creates_the_user_and_groups(root: tuple[Path, str]) -> None:
    target, _ = root
    user = db_entry(target, "passwd", "checkpoint-edge")
    assert user[5:] == ["/var/lib/checkpoint-edge", "/usr/sbin/nologin"]
    assert int(user[2]) < 1000  # a system user
    own_group = db_entry(target, "group", "checkpoint-edge")
    assert user[3] == own_group[2]
    for name in ("gpio", "video"):
        assert "checkpoint-edge" in db_entry(target, "group", name)[3].split(",")
    state = (target / "var/lib/checkpoint-edge").stat()
    assert (stat.S_IMODE(state.st_mode), state.st_uid) == (0o750, int(user[2]))


@needs_root
def test_writes_the_config_with_its_modes(root: tuple[Path, str]) -> None:
    target, _ = root
    gid = int(db_entry(target, "group", "checkpoint-edge")[2])
    conf_dir = target / "etc/checkpoint-edge"
    for path, mode in (
        (conf_dir, 0o750),
        (conf_dir / "tls", 0o750),
        (conf_dir / "config.toml", 0o640),
    ):
        st = path.stat()
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (mode, 0, gid), path
    secrets = (conf_dir / "credentials").stat()  # the unit's LoadCredential= source: root only
    assert (stat.S_IMODE(secrets.st_mode), secrets.st_uid, secrets.st_gid) == (0o700, 0, 0)
    assert (conf_dir / "config.toml").read_text() == EXAMPLE.read_text()
    assert not (conf_dir / "config.toml.example").exists()


def test_the_example_config_passes_check_config_once_filled_in(tmp_path: Path) -> None:
    text = EXAMPLE.read_text()
    unedited = subprocess.run(
        [DEV_CLI, "check-config", EXAMPLE], capture_output=True, text=True, timeout=60, check=False
    )
    assert unedited.returncode == 2  # the placeholder id refuses to start
    assert "device.id" in unedited.stderr
    # Fill in what an administrator fills in; the files it names live in tmp_path.
    filled = (
        text.replace('id = "CHANGE-ME"', 'id = "lane-07"')
        .replace('host = "broker.example.vn"', 'host = "broker.test"')
        .replace("/etc/checkpoint-edge/", f"{tmp_path}/")
        .replace('"/var/lib/checkpoint-edge"', f'"{tmp_path}/store"')
    )
    assert "/etc/" not in filled
    assert "/var/" not in filled
    (tmp_path / "tls").mkdir()
    for name in ("ca.pem", "device.pem", "fleet-signing.pub.pem"):
        (tmp_path / "tls" / name).write_text("-----BEGIN PLACEHOLDER-----\n")
    credentials = tmp_path / "credentials"  # as systemd's LoadCredential= hands it over
    credentials.mkdir()
    (credentials / "mqtt-key").write_text("-----BEGIN PLACEHOLDER-----\n")
    shutil.copy(REPO / "edge" / "samples" / "demo-trust.json", tmp_path / "trust.json")
    config = tmp_path / "config.toml"
    config.write_text(filled)
    result = subprocess.run(
        [DEV_CLI, "check-config", config],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "CREDENTIALS_DIRECTORY": str(credentials)},
    )
    assert result.returncode == 0, result.stderr
    assert "OK (device lane-07, camera picamera2" in result.stdout


@needs_root
def test_installs_and_enables_the_unit(root: tuple[Path, str]) -> None:
    target, out = root
    unit = target / "etc/systemd/system/checkpoint-edge.service"
    assert unit.read_bytes() == UNIT.read_bytes()
    assert stat.S_IMODE(unit.stat().st_mode) == 0o644
    wants = target / "etc/systemd/system/multi-user.target.wants/checkpoint-edge.service"
    assert os.readlink(wants) == "/etc/systemd/system/checkpoint-edge.service"
    assert "skipped: systemctl daemon-reload (--root)" in out
    assert "skipped: --root" in out  # no apt-get
    assert "Next:" in out
    assert "check-config /etc/checkpoint-edge/config.toml" in out


# -- (d) ---------------------------------------------------------------------


@needs_root
def test_a_second_run_changes_nothing_and_keeps_an_edited_config(tmp_path: Path) -> None:
    installed("--root", tmp_path, "--no-deps")
    before = listing(tmp_path)
    again = installed("--root", tmp_path, "--no-deps")
    assert listing(tmp_path) == before
    assert "Nothing changed: everything was already installed." in again
    for line in again.splitlines():
        assert not line.startswith(("+ ", "wrote:")), line
    assert "ok: checkpoint-edge 0.1.0 is installed from source" in again
    assert "ok: checkpoint-edge.service is enabled" in again

    conf = tmp_path / "etc/checkpoint-edge/config.toml"
    edited = conf.read_text().replace('id = "CHANGE-ME"', 'id = "lane-07"')
    conf.write_text(edited)
    third = installed("--root", tmp_path, "--no-deps")
    assert conf.read_text() == edited
    assert (conf.parent / "config.toml.example").read_text() == EXAMPLE.read_text()
    assert "config.toml exists and is kept as it is" in third
    assert "wrote: " + str(conf.parent / "config.toml.example") in third
    before = listing(tmp_path)
    fourth = installed("--root", tmp_path, "--no-deps")
    assert listing(tmp_path) == before
    assert "Nothing changed" in fourth


# -- (e) ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bogus"], "unknown option: --bogus"),
        (["--dry-run", "extra"], "unknown option: extra"),
        (["--root"], "--root needs an argument"),
        (["--root", "/nonexistent/root"], "--root: no such directory"),
        (["--start", "--root", "/tmp"], "--start cannot be used with --root"),
    ],
)
def test_usage_errors_exit_2(args: list[str], message: str) -> None:
    result = install(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "usage: deploy/install.sh" in result.stderr
    assert result.stdout == ""


def test_help() -> None:
    result = install("--help")
    assert result.returncode == 0
    for option in ("--dry-run", "--root DIR", "--wheel FILE", "--no-deps", "--start"):
        assert option in result.stdout
    assert "for tests" in result.stdout
