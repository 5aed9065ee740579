"""docs/howto/channels-server.md, authorization.md, presence.md: each sample runs as pasted.

Each page has one complete program (it serves on a free port and plays a
client by hand) and, right after it, the ``text`` block it prints.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [
    "docs/howto/channels-server.md",
    "docs/howto/authorization.md",
    "docs/howto/presence.md",
]
#: Seconds one sample may take.
SAMPLE_TIMEOUT = 60


def sample(page: str) -> tuple[str, str]:
    """The page's program and the output it shows."""
    text = (ROOT / page).read_text()
    programs = re.findall(r"^```python\n(.*?)^```", text, re.DOTALL | re.MULTILINE)
    outputs = re.findall(r"^```text\n(.*?)^```", text, re.DOTALL | re.MULTILINE)
    assert len(programs) == 1, page
    assert len(outputs) == 1, page
    return programs[0], outputs[0]


@pytest.mark.parametrize("page", PAGES)
def test_the_sample_prints_what_the_page_says(page: str) -> None:
    program, shown = sample(page)
    result = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        timeout=SAMPLE_TIMEOUT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    printed = [line.rstrip() for line in result.stdout.splitlines()]
    assert printed == shown.splitlines()
