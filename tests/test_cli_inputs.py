"""Every file a command reads is bounded (issue 15, item 6): the real command line,
run as a subprocess, on input that is not UTF-8, ``/dev/zero``, a FIFO, a file too
large, a directory, a missing file. Each ends at once (a subprocess timeout fails
the test if it spins) with exit code 2 and one line on stderr, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from edge import files
from edge.errors import InputError

TOO_LARGE = 64 * files.MiB  # above every limit of a command's input (a sparse file)


def cli(*args: str | bytes | Path, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge", *args],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=timeout,  # TimeoutExpired: the command spun on its input
        check=False,
        stdin=subprocess.DEVNULL,
    )


def bad_input(kind: str, tmp_path: Path) -> Path:
    """A path to an input of ``kind``."""
    if kind == "not-utf8":
        path = tmp_path / "bad.bin"
        path.write_bytes(b"\xff\xfe\x80 [device]\n\xc3\x28")
        return path
    if kind == "dev-zero":
        return Path("/dev/zero")
    if kind == "fifo":
        path = tmp_path / "fifo"
        os.mkfifo(path)  # no writer: opening it for reading would block
        return path
    if kind == "too-large":
        path = tmp_path / "large"
        with path.open("wb") as fh:
            fh.truncate(TOO_LARGE)
        return path
    if kind == "directory":
        path = tmp_path / "adir"
        path.mkdir()
        return path
    assert kind == "missing"
    return tmp_path / "missing.toml"


def pki_dir(tmp_path: Path, index: Path) -> Path:
    """A PKI directory whose index.json is ``index`` (a link to it)."""
    directory = tmp_path / "pki"
    directory.mkdir()
    (directory / "index.json").symlink_to(index)
    return directory


KINDS = ["not-utf8", "dev-zero", "fifo", "too-large", "directory", "missing"]
Command = Callable[[Path, Path], list[str | Path]]
COMMANDS: dict[str, Command] = {
    "verify --trust": lambda f, _: ["verify", "--text", "x", "--trust", f],
    "verify --image": lambda f, _: ["verify", "--image", f],
    "check-config": lambda f, _: ["check-config", f],
    "doctor -c": lambda f, _: ["doctor", "-c", f],
    "outbox -c": lambda f, _: ["outbox", "-c", f, "status"],
    "issue --key": lambda f, _: ["issue", "--issuer", "x", "--key", f],
    "issue --in": lambda f, _: ["issue", "--issuer", "x", "--key", f, "--in", f],
    "rules eval --rule": lambda f, _: ["rules", "eval", "--rule", f, "--dcc", "--text", "HC1:"],
    "fleet -c": lambda f, _: ["fleet", "-c", f, "status"],
    "fleet trust push": lambda f, _: ["fleet", "trust", "push", f, "--key", f],
    "fleet policy push": lambda f, _: ["fleet", "policy", "push", f, "--key", f],
    "fleet config": lambda f, _: ["fleet", "--port", "1", "config", "lane-1", f],
    "pki list": lambda f, tmp: ["pki", "list", "--dir", pki_dir(tmp, f)],
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_bad_input_file_is_one_line_and_exit_code_2(
    command: str, kind: str, tmp_path: Path
) -> None:
    path = bad_input(kind, tmp_path)
    result = cli(*COMMANDS[command](path, tmp_path))
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr
    assert len(lines[0]) < 300, lines[0]  # a reason, not a dump of the file


@pytest.mark.parametrize(
    "argv",
    [
        ["verify", "--text", b"HC1:\xff\xfe"],
        ["verify", "--text", "A" * (files.QR_TEXT + 1)],
        ["rules", "eval", "--rule", "missing.json", "--dcc", "--text", b"HC1:\xc3\x28"],
    ],
    ids=["verify-not-utf8", "verify-too-long", "rules-eval-not-utf8"],
)
def test_text_arguments_not_utf8_or_too_long(argv: list[str | bytes]) -> None:
    result = cli(*argv)
    assert "Traceback" not in result.stderr
    assert result.returncode == 2, result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.strip()]
    assert "--text" in line


def test_the_messages_say_what_is_wrong(tmp_path: Path) -> None:
    def error(kind: str) -> str:
        result = cli("verify", "--text", "x", "--trust", bad_input(kind, tmp_path))
        return result.stderr.strip()

    assert error("dev-zero") == (
        "checkpoint-edge verify: /dev/zero: a trust file must be a regular file, "
        "not a device, FIFO or socket"
    )
    assert error("directory").endswith("adir: is a directory, not a trust file")
    assert error("too-large").endswith("large: larger than 16 MiB: too large for a trust file")
    assert error("missing").endswith("cannot read the trust file: No such file or directory")
    bad = cli("check-config", bad_input("not-utf8", tmp_path)).stderr.strip()
    assert bad.endswith("bad.bin: config file is not UTF-8 text (byte 0)")


def test_read_limited_reads_at_most_the_limit_plus_one(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 10)
    assert files.read_limited(path, 10, "file") == b"x" * 10
    with pytest.raises(InputError, match="larger than 9 bytes"):
        files.read_limited(path, 9, "file")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="regular file"):
        files.read_limited(fifo, 10, "file")  # returns at once: opened without blocking
    assert files.size(16 * files.MiB) == "16 MiB"
    assert files.size(8 * files.KiB) == "8 KiB"
