"""One chromedriver, the Chromium it started, and the DevTools connection to that browser.

chromedriver is always started from ``config.driver_path`` and Chromium from
``config.browser_path``, so Selenium Manager never runs (it would try to download both). Both
run in a process group of their own, with their temporary files in one folder of ours, so
that a slot can always be stopped whole: politely (``quit``), or at once (``kill``) from any
thread.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...core.contracts import EngineConfig
from ..chromium import kill_process_tree, launch_args
from ..reaper import Reaper, start_time
from .devtools import Cdp

if TYPE_CHECKING:
    from selenium.webdriver.chrome.webdriver import WebDriver

#: A polite driver quit may take this long before the slot's processes are killed.
QUIT_TIMEOUT = 5.0

#: Playwright and pyppeteer pass these too: a page that lost the foreground to a pop-up
#: (or any page, on a loaded machine) must not be throttled into missing its deadline.
_FOREGROUND_ARGS = (
    "--disable-background-timer-throttling",
    "--disable-backgrounding-occluded-windows",
    "--disable-renderer-backgrounding",
)


class Driver:
    """One chromedriver, the Chromium it started, and the thread that talks to them (every
    call to the driver runs in ``executor``: Selenium's API blocks)."""

    def __init__(self, number: int, reaper: Reaper) -> None:
        self.number = number
        self.reaper = reaper  # kills chromedriver and Chromium should the worker die
        self.executor = ThreadPoolExecutor(1, thread_name_prefix=f"distshot-selenium-{number}")
        self.driver: WebDriver | None = None
        self.service: Any = None  # selenium's Service: it holds chromedriver's process
        self.browser_pid: int | None = None
        self.browser_started: str | None = None  # /proc start time, against pid reuse
        self.tmp: str | None = None
        self.cdp: Cdp | None = None
        self.broken = False  # do not reuse: a crash, or state we cannot vouch for
        #: Called from the DevTools reader thread when the browser goes away.
        self.lost: Callable[[], None] = lambda: None

    # start and stop

    def start(self, config: EngineConfig) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = config.browser_path
        for arg in launch_args(config.extra_args):
            options.add_argument(arg)
        options.add_argument("--headless=new")
        for arg in _FOREGROUND_ARGS:
            options.add_argument(arg)
        # chromedriver turns Chromium's pop-up blocker off; the other engines leave it on.
        options.add_experimental_option("excludeSwitches", ["disable-popup-blocking"])
        # We wait for DevTools lifecycle events ourselves, with the job's deadline.
        options.page_load_strategy = "none"
        options.set_capability("unhandledPromptBehavior", "dismiss")
        # chromedriver and Chromium keep their temporary folders (profile, singleton socket,
        # chromedriver's own) in one folder of ours, removed whole however the slot ends.
        self.tmp = tempfile.mkdtemp(prefix="distshot-selenium-")
        service = Service(
            executable_path=config.driver_path,
            log_output=subprocess.DEVNULL,
            env={**os.environ, "TMPDIR": self.tmp},
            # Its own process group: one killpg() reaches chromedriver and every Chromium
            # process, even those whose parent already died; and a terminal's Ctrl-C goes to
            # the worker, which closes the engine, not straight to the browsers.
            popen_kw={"start_new_session": True},
        )
        self.service = service
        driver = webdriver.Chrome(service=service, options=options)
        self.driver = driver
        if self.process is not None:
            self.reaper.watch(self.process.pid)
        caps = driver.capabilities
        pid = caps.get("goog:processID")
        self.browser_pid = int(pid) if pid else None
        if self.browser_pid is not None:
            self.browser_started = start_time(self.browser_pid)
            # Watched on its own too: should chromedriver die first, Chromium leaves its tree.
            self.reaper.watch(self.browser_pid)
        address = caps["goog:chromeOptions"]["debuggerAddress"]
        self.cdp = Cdp(address, lambda: self.lost())
        self.cdp.call("Target.setDiscoverTargets", {"discover": True}, timeout=10)

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        """chromedriver's process, once started."""
        return getattr(self.service, "process", None)

    def quit(self) -> None:
        """Politely: Chromium closes (and removes its own temporary files), then chromedriver,
        which has nothing left to drive, is stopped."""
        cdp = self.cdp
        if cdp is not None and not cdp.closed:
            cdp.expect_close()  # the connection dropping now is no crash
            with contextlib.suppress(Exception):
                cdp.call("Browser.close", timeout=QUIT_TIMEOUT)
            deadline = time.monotonic() + QUIT_TIMEOUT
            while self._browser_alive() and time.monotonic() < deadline:
                time.sleep(0.05)
        if cdp is not None:
            cdp.close()
        process = self.process
        if process is not None and process.poll() is None:
            process.terminate()

    def _browser_alive(self) -> bool:
        pid = self.browser_pid
        if pid is None or start_time(pid) != self.browser_started:
            return False
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return False
        return state != "Z"

    def kill(self) -> None:
        """SIGKILL chromedriver and every Chromium process (safe to call from any thread)."""
        if self.cdp is not None:
            self.cdp.close()
        process = self.process
        if process is not None and process.returncode is None:
            # Not reaped yet, so its pid (and group id) cannot have been reused.
            with contextlib.suppress(OSError):
                if os.getpgid(process.pid) == process.pid:  # it leads its own group
                    os.killpg(process.pid, signal.SIGKILL)
            kill_process_tree(process.pid)
        pid = self.browser_pid
        if pid is not None and start_time(pid) == self.browser_started:
            kill_process_tree(pid)

    def reap(self) -> None:
        """Wait for chromedriver (no zombie) and remove the slot's temporary folder."""
        if self.process is not None:
            try:
                self.process.wait(QUIT_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(QUIT_TIMEOUT)
        if self.process is not None:
            self.reaper.forget(self.process.pid)
        if self.browser_pid is not None:
            self.reaper.forget(self.browser_pid)
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)

    @property
    def pid(self) -> int | None:
        """The browser's process id (for the recycling policy's memory check)."""
        return self.browser_pid
