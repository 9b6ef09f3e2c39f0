"""Pages read back from headless Chromium, for the tests of the report and the network explorer: the HTML is
what a user opens, so the check is what a browser makes of it, not what the template wrote."""

import html
import re
import shutil
import subprocess
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    assert path, "the browser tests need Chromium: `apt-get install chromium` (the Makefile's test target does it)"
    return path


def rendered_dom(page: str, work: Path, script: str) -> str:
    """The DOM of ``page`` after its load event, with ``script`` (a ``<script>`` element) run at the end of the
    body; the probe copy and the browser profile go under ``work``."""
    copy = work / "probe.html"
    copy.write_text(page.replace("</body>", script + "</body>"))
    return subprocess.run([chromium(), *FLAGS, f"--user-data-dir={work / 'profile'}", "--virtual-time-budget=5000",
                           "--dump-dom", copy.as_uri()], capture_output=True, text=True, timeout=120).stdout


def probe_text(page: str, work: Path, script: str) -> str:
    """The text ``script`` put in a ``<pre id="probe">`` it appended to the body."""
    found = re.search(r'<pre id="probe">(.*?)</pre>', rendered_dom(page, work, script), re.S)
    assert found, "the page did not run its script"
    return html.unescape(found.group(1))
