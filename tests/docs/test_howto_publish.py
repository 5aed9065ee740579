"""docs/howto/publish.md: each sample runs as pasted against a small version 2 server.

The server (``tests/support/channel_server.py``, shared with the channels
how-to) runs as a subprocess on a free port and drops its clients every
400 ms, so publishes cross reconnects; it applies a publish once per
clientId and msgId, and refuses publishes to ``secret``. The only change to a
sample is that port; each runs in its own directory (the second writes its
state file there).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.docs.test_howto_channels_client import ROOT, URL
from tests.docs.test_howto_channels_client import server as server  # the fixture

PAGE = ROOT / "docs" / "howto" / "publish.md"


def samples() -> list[str]:
    text = PAGE.read_text()
    return [m[1] for m in re.finditer(r"^```python\n(.*?)^```", text, re.DOTALL | re.MULTILINE)]


SAMPLES = samples()


def run(code: str, port: int, where: Path) -> list[str]:
    assert URL in code
    script = where / "sample.py"
    script.write_text(code.replace(URL, f"ws://127.0.0.1:{port}/"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=where,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_the_page_has_its_two_samples() -> None:
    assert len(SAMPLES) == 2


def test_publish_and_get_the_ids(server: int, tmp_path: Path) -> None:
    out = run(SAMPLES[0], server, tmp_path)
    first = int(out[0].removeprefix("appended as "))
    assert out[1] == f"and one more: {first + 201}"  # 200 pipelined between, once each
    assert out[2] == "refused: secret 202 forbidden scripted"


def test_exactly_once_across_a_restart(server: int, tmp_path: Path) -> None:
    state = tmp_path / "publisher-state.json"
    # What a process stopped with two publishes unanswered left behind.
    saved = {
        "clientId": "orders-1",
        "nextMsgId": "2",
        "publishes": [
            {"channel": "orders", "msgId": "0", "data": {"order": "a"}},
            {"channel": "orders", "msgId": "1", "data": {"order": "b"}},
        ],
    }
    state.write_text(json.dumps(saved))
    out = run(SAMPLES[1], server, tmp_path)
    assert out == ["re-sending 2 saved publishes first", "pending: 0"]
    after = json.loads(state.read_text())
    assert after == {"clientId": "orders-1", "nextMsgId": "52", "publishes": []}
    out = run(SAMPLES[1], server, tmp_path)  # the next start: nothing left to re-send
    assert out == ["re-sending 0 saved publishes first", "pending: 0"]
    assert json.loads(state.read_text())["nextMsgId"] == "102"
