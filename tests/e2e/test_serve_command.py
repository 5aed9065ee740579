"""``serve --redis``: what a new user sees when Redis is not there, or the URL is wrong."""

from __future__ import annotations

import subprocess
import sys

import pytest

from trio_reconnect.testing._node_process import child_environment
from trio_reconnect.testing._redis_server import _free_port


def _serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trio_reconnect", "serve", "--port", "0", *args],
        capture_output=True,
        text=True,
        env=child_environment(),
        timeout=60,
        check=False,
    )


def test_redis_unreachable_at_start_is_one_line_and_exit_1() -> None:
    port = _free_port()  # nothing listens there
    result = _serve("--redis", f"redis://127.0.0.1:{port}/0")
    assert result.returncode == 1
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("serve: cannot start without the log: ")
    assert f"127.0.0.1:{port}" in line


def test_a_url_that_is_not_redis_is_a_usage_error() -> None:
    result = _serve("--redis", "http://127.0.0.1:6379/0")
    assert result.returncode == 2
    assert "is not a Redis URL" in result.stderr.splitlines()[-1]
    assert "Traceback" not in result.stderr


def test_a_store_failure_is_logged_on_one_line_and_a_bug_with_its_traceback() -> None:
    import logging
    import sys as _sys

    from trio_reconnect._tools._serve import _OneLineFormatter
    from trio_reconnect.server import LogUnavailableError

    formatter = _OneLineFormatter("%(message)s")

    def record(error: BaseException) -> logging.LogRecord:
        try:
            raise error
        except BaseException:
            info = _sys.exc_info()
        return logging.LogRecord(
            "x", logging.WARNING, __file__, 1, "could not %s", ("announce",), info
        )

    line = formatter.format(record(LogUnavailableError("Redis at h:1/0: announce: refused")))
    assert line == "could not announce: Redis at h:1/0: announce: refused"
    bug = formatter.format(record(ZeroDivisionError("division by zero")))
    assert bug.startswith("could not announce\nTraceback")


def test_cluster_options_without_redis_are_a_usage_error() -> None:
    result = _serve("--node", "a")
    assert (result.returncode, result.stderr) == (
        2,
        "serve: --node needs --redis (a node alone has no cluster)\n",
    )
    result = _serve("--stream", "s", "--node", "a")
    assert (
        result.stderr == "serve: --stream and --node need --redis (a node alone has no cluster)\n"
    )


def test_bad_presence_options_are_one_line_and_exit_2() -> None:
    result = _serve("--presence-grace", "5")
    assert (result.returncode, result.stderr) == (
        2,
        "serve: --presence-grace needs --presence (which channels carry presence)\n",
    )
    for bad in (("--presence", ""), ("--presence", "a*", "--presence-grace", "0")):
        result = _serve(*bad)
        assert result.returncode == 2
        (line,) = result.stderr.splitlines()
        assert line.startswith(f"serve: {bad[-2]}"), line


def test_a_redis_url_the_backend_refuses_is_one_line_and_exit_2() -> None:
    result = _serve("--redis", "redis://127.0.0.1:6379/x")
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("serve: --redis: "), line
    assert "database must be a number" in line


def test_the_help_names_the_backends_default_stream(capsys: pytest.CaptureFixture[str]) -> None:
    from trio_reconnect._tools import _cli
    from trio_reconnect.server.redis import DEFAULT_STREAM

    with pytest.raises(SystemExit):
        _cli.main(["serve", "--help"])
    assert f"default {DEFAULT_STREAM})" in " ".join(capsys.readouterr().out.split())
