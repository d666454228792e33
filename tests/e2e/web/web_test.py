#!/usr/bin/env python3
"""The owner's web page in a real browser, end to end.

Starts, on loopback and on ports the kernel picks:

  * a real OpenID provider (npm `oidc-provider`, tests/web/oidc-provider/
    server.js, run with Node.js), knowing this page as a client;
  * tilgang (the real binary) on a temp copy of `policies/` and
    `tests/fixtures/data`, with the web page logging people in with that
    provider (or, with --dev-login, in development mode: a typed-in person);
  * headless Chromium (Debian's `chromium` + `chromium-driver`), driven by
    Selenium, with a fresh profile and Norwegian Bokmål as its language.

Then a general manager (DAGL) does in the browser what the page is for, and
every step is checked where it matters: on the page, and in tilgang's
`IsAuthorized` answer, asked with the real binary (`tilgang ask`):

  1. log in (“Logg inn med ID-porten”, the provider's form, back through
     /auth/callback), delegate `instances-read` to 889 640 782 (add → rights →
     confirm → receipt → overview), then `ask`: allowed;
  2. edit, untick, save → receipt with "Angre"; `ask`: denied; "Angre" →
     allowed; edit and remove again → denied;
  3. bad input: the error summary is shown, has focus, links to the field,
     and the field is `aria-invalid`; nothing chosen on the rights step too;
  4. forged forms: one without the CSRF token (same origin) and one from
     another origin (with the real token) are refused (403), nothing changes;
  5. keyboard only (Tab, Space, Enter): the whole delegate flow, with a
     visible focus on every stop;
  6. log out (at the provider too) and the overview asks for login again; a
     login at too low a level (`lav`) is refused with "Innloggingen
     mislyktes"; a person without a key role for 991 825 827 (02029054321,
     APIADM for 983 887 457 only) is told that the general manager can help.
     With --dev-login: a person with no role at all, and a malformed
     fødselsnummer.

On every page visited and every error state: axe-core (WCAG 2.1 A and AA:
tags wcag2a, wcag2aa, wcag21a, wcag21aa) finds no violation, the browser's
console has no error (a CSP refusal would be one), and a full-page
screenshot is saved under target/e2e-web-screenshots/ (NN-step.png). The
provider's own pages (its login form, its logout confirmation) are not ours:
they get a screenshot but no axe or console check.

One line per check, then `web-e2e: N passed, N failed`; exit 1 on any
failure, 2 when the run could not start, 130 on Ctrl-C. Every process it
started (the provider, tilgang, chromedriver, Chromium) is stopped on the
way out.

    target/e2e-venv/bin/python tests/e2e/web/web_test.py --tilgang target/debug/tilgang
    target/e2e-venv/bin/python tests/e2e/web/web_test.py --tilgang target/debug/tilgang --dev-login

Needs: `npm ci --prefix tests/e2e/web` (axe-core), `npm ci --prefix
tests/web/oidc-provider` and Node.js (not with --dev-login), the packages in
tests/e2e/web/requirements.txt, and Debian's `chromium` and
`chromium-driver`. See tests/e2e/web/README.md.

The login is one function, `log_in(driver, person)`: `log_in_oidc` (the
provider's form, the test account named by its pid), or `log_in_dev`
(development mode's "Fødselsnummer" field) with --dev-login.
"""

from __future__ import annotations

import argparse
import base64
import ctypes
import http.server
import json
import os
import select
import socket
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request
from pathlib import Path
from typing import Any, Callable

from selenium import webdriver
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
AXE = HERE / "node_modules" / "axe-core" / "axe.min.js"
PROVIDER = REPO / "tests" / "web" / "oidc-provider"
CLIENT_ID = "tilgang-web-e2e"

# Fixture facts (tests/fixtures/data): 01017012345 is DAGL for 991825827,
# which gave instances-full to 810418672; 889640782 has nothing;
# 05057512345 has no role anywhere; 02029054321 is APIADM for 983887457 only.
# The provider's test accounts (tests/web/oidc-provider/README.md), logged
# in by pid: `dagl` 01017012345 (substantial), `hoy` 02029054321 (high),
# `lav` 03038512345 (low: refused). It has no account without any role.
OWNER = "991825827"
OWNER_SPACED = "991 825 827"
DAGL = "01017012345"
NO_ROLE = "05057512345"
OTHER_OWNER_ADMIN = "02029054321"
OTHER_OWNER_SPACED = "983 887 457"
LOW_LEVEL = "03038512345"
SUPPLIER = "889640782"
SUPPLIER_SPACED = "889 640 782"
FIXTURE_SUPPLIER_SPACED = "810 418 672"
READ = "altinn:serviceowner/instances.read"
WRITE = "altinn:serviceowner/instances.write"
RIGHT_READ = "instances-read"
RIGHT_FULL = "instances-full"

WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
WAIT = 30.0  # bound for every wait, in seconds


class CheckFailed(Exception):
    pass


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP, handled like Ctrl-C."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _die_with_parent() -> None:
    """In the child: be killed when this test process dies, even by SIGKILL (Linux)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:
            pass


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment without TILGANG_* (so no outside setting changes the run)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TILGANG_")}
    env.update(extra or {})
    return env


# --- the login: the one step that changes with an OpenID provider ----------------


def log_in_dev(driver: webdriver.Chrome, person: str) -> None:
    """Development mode (`--dev-login`): type the "Fødselsnummer" and press "Logg inn".

    Leaves the browser on the page the login leads to (the overview, or the
    step the person was on).
    """
    if "/login" not in driver.current_url:
        driver.get(driver.web_url + "/login")
    field = driver.find_element(By.ID, "person")
    field.clear()
    field.send_keys(person)
    submit(driver, driver.find_element(By.CSS_SELECTOR, "form[action='/login'] button[type=submit]"))


def log_in_oidc(driver: webdriver.Chrome, person: str) -> None:
    """The real login: "Logg inn med ID-porten" on our login page, the
    provider's form (the test account by its pid, or its login name), and
    back through /auth/callback to the page the login leads to (the
    overview, or our login page with its refusal).

    The provider must ask who logs in: if it sends the browser straight back
    (a provider session from an earlier login), that is a failure, since the
    person logged in would not be `person`.
    """
    if not driver.current_url.startswith(driver.web_url + "/"):
        driver.get(driver.web_url + "/login")
    links = driver.find_elements(By.CSS_SELECTOR, "main a[href='/auth/login']")
    if not links:
        driver.get(driver.web_url + "/login")
        links = driver.find_elements(By.CSS_SELECTOR, "main a[href='/auth/login']")
    if not links:
        raise CheckFailed(f"no “Logg inn med ID-porten” link (at {driver.current_url})")
    if links[0].text.strip() != "Logg inn med ID-porten":
        raise CheckFailed(f"the login link says {links[0].text!r}")
    navigates(driver, links[0].click)
    if not driver.current_url.startswith(driver.issuer + "/interaction/"):
        raise CheckFailed(f"the provider did not ask who logs in (at {driver.current_url}): "
                          "a provider session from an earlier login?")
    field = wait_for(driver, "the provider's login form",
                     lambda d: d.find_element(By.CSS_SELECTOR, "#login-form #login"))
    driver.provider_page(f"provider-login-{person}")
    field.send_keys(person)
    submit(driver, driver.find_element(By.ID, "submit"))
    if driver.find_elements(By.ID, "problem"):
        raise CheckFailed(f"the provider has no test account {person!r}: "
                          f"{driver.find_element(By.ID, 'problem').text}")
    wait_for(driver, "the way back to the page", lambda d: d.current_url.startswith(d.web_url + "/"))


# The login every scenario uses: `log_in_oidc`, or `log_in_dev` with
# --dev-login (set in main).
log_in: Callable[[webdriver.Chrome, str], None] = log_in_oidc


# --- browser helpers --------------------------------------------------------------


def wait_for(driver: webdriver.Chrome, what: str, cond: Callable[[Any], Any], timeout: float = WAIT) -> Any:
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.05).until(cond)
    except TimeoutException:
        raise CheckFailed(f"timed out after {timeout:.0f} s waiting for {what} (at {driver.current_url})")


def navigates(driver: webdriver.Chrome, act: Callable[[], None]) -> None:
    """Do `act` (a click, a key) and wait until the next page has loaded.

    The old page is marked with a token only its window object holds; the
    next page is there when a loaded document no longer has it. (Waiting for
    the old <html> element to go stale races with chromedriver, which then
    answers "Node with given id does not belong to the document".)
    """
    token = os.urandom(8).hex()
    driver.execute_script("window.__e2e_page = arguments[0]", token)
    act()

    def next_page(_: Any) -> bool:
        return bool(driver.execute_script(
            "return window.__e2e_page !== arguments[0] && document.readyState === 'complete'", token))
    try:
        WebDriverWait(driver, WAIT, poll_frequency=0.05, ignored_exceptions=(WebDriverException,)).until(next_page)
    except TimeoutException:
        raise CheckFailed(f"timed out after {WAIT:.0f} s waiting for the next page (at {driver.current_url})")


def submit(driver: webdriver.Chrome, element: WebElement) -> None:
    navigates(driver, element.click)


def status(driver: webdriver.Chrome) -> int:
    """The HTTP status of the page shown (Navigation Timing's responseStatus)."""
    return int(driver.execute_script(
        "const n = performance.getEntriesByType('navigation')[0]; return n ? n.responseStatus : 0;"))


def path(driver: webdriver.Chrome) -> str:
    return driver.execute_script("return location.pathname")


def h1(driver: webdriver.Chrome) -> str:
    return driver.find_element(By.TAG_NAME, "h1").text


def body(driver: webdriver.Chrome) -> str:
    return driver.find_element(By.TAG_NAME, "body").text


def button(driver: webdriver.Chrome, text: str) -> WebElement:
    """The button or button-styled link whose visible text is `text`."""
    for el in driver.find_elements(By.CSS_SELECTOR, "main button, main a.button, main a"):
        if el.text.strip() == text:
            return el
    raise CheckFailed(f"no button {text!r} on {path(driver)}")


def active(driver: webdriver.Chrome) -> WebElement:
    return driver.switch_to.active_element


def press(driver: webdriver.Chrome, key: str) -> None:
    ActionChains(driver).send_keys(key).perform()


def describe(driver: webdriver.Chrome, el: WebElement) -> str:
    return driver.execute_script(
        "const e = arguments[0]; return e.tagName.toLowerCase() + (e.id ? '#' + e.id : '')"
        " + (e.getAttribute('href') ? '[href=' + e.getAttribute('href') + ']' : '')"
        " + (e.value && e.type !== 'hidden' ? '[value=' + e.value + ']' : '')"
        " + ' ' + JSON.stringify((e.innerText || '').trim().slice(0, 40))", el)


def focus_visible(driver: webdriver.Chrome, el: WebElement) -> bool:
    """Whether `el` shows its keyboard focus: `:focus-visible` and an outline or ring."""
    return bool(driver.execute_script(
        "const e = arguments[0]; const s = getComputedStyle(e);"
        "return e.matches(':focus-visible') &&"
        " ((s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0) || s.boxShadow !== 'none');", el))


# --- the harness -------------------------------------------------------------------


class Harness:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.tilgang_bin = str(Path(args.tilgang).resolve())
        self.tmp = Path(tempfile.mkdtemp(prefix="tilgang-web-e2e-"))
        self.shots = Path(args.screenshots).resolve()
        self.shot_no = 0
        self.passed = 0
        self.failed: list[str] = []
        self.tilgang: subprocess.Popen | None = None
        self.tilgang_log = self.tmp / "tilgang.log"
        self.dev = args.dev_login
        self.provider: subprocess.Popen | None = None
        self.provider_log = self.tmp / "provider.log"
        self.issuer = ""
        self.end_session = ""
        self.provider_notes: list[str] = []
        self.service: Service | None = None
        self.driver: webdriver.Chrome | None = None
        self.other_site: http.server.ThreadingHTTPServer | None = None
        self.gateway_addr = ""
        self.web = ""
        self.axe_source = ""
        self.axe_findings: list[str] = []

    # -- checks

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        if ok:
            self.passed += 1
            print(f"ok    {name}", flush=True)
        else:
            self.failed.append(name)
            print(f"FAIL  {name}" + (f"\n      {detail}" if detail else ""), flush=True)
        return ok

    def require(self, name: str, ok: bool, detail: str = "") -> None:
        """A check the rest of the scenario depends on: stop the scenario if it fails."""
        if not self.check(name, ok, detail):
            raise CheckFailed(name)

    def scenario(self, name: str, run: Callable[[], None]) -> None:
        print(f"--- {name}", flush=True)
        try:
            run()
        except CheckFailed as e:
            if str(e) not in self.failed:
                self.check(f"{name}: {e}", False)
        except WebDriverException as e:
            where = [f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in traceback.extract_tb(e.__traceback__)
                     if f.filename == __file__]
            self.check(f"{name}: the browser failed", False,
                       f"{type(e).__name__}: {e.msg}\n      at {' ← '.join(reversed(where))}")
            self.shot(f"{name}-failed")

    # -- start-up and shutdown

    def start_provider(self, web: str) -> None:
        """The OpenID provider (npm oidc-provider, tests/web/oidc-provider),
        on a port the kernel picks, knowing this page's redirect URIs."""
        secret = os.urandom(24).hex()
        self.secret_file = self.tmp / "client-secret"
        self.secret_file.write_text(secret + "\n")
        self.secret_file.chmod(0o600)
        argv = [self.args.node, str(PROVIDER / "server.js"), "--port", "0", "--client-id", CLIENT_ID,
                "--redirect-uri", f"{web}/auth/callback", "--post-logout-redirect-uri", f"{web}/login",
                "--exit-with-stdin"]
        log = open(self.provider_log, "ab")
        # The secret by environment, not on a command line anyone can read.
        self.provider = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
            env=child_env({"OIDC_CLIENT_SECRET": secret, "NO_COLOR": "1"}),
            start_new_session=True, preexec_fn=_die_with_parent)
        log.close()
        deadline = time.monotonic() + WAIT
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.provider.stdout], [], [], left)[0]:
                raise CheckFailed(f"the OpenID provider printed no `issuer=` within {WAIT:.0f} s:\n"
                                  + self.provider_log.read_text(errors="replace"))
            chunk = os.read(self.provider.stdout.fileno(), 4096)
            if not chunk:
                raise CheckFailed(f"the OpenID provider exited ({self.provider.wait()}) before listening:\n"
                                  + self.provider_log.read_text(errors="replace"))
            line += chunk
        m = re.match(r"issuer=(http://127\.0\.0\.1:\d+)\n", line.decode())
        if not m:
            raise CheckFailed(f"the OpenID provider said {line!r}, not `issuer=…`")
        self.issuer = m.group(1)
        no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, never a proxy
        with no_proxy.open(self.issuer + "/.well-known/openid-configuration", timeout=WAIT) as r:
            meta = json.load(r)
        self.end_session = meta.get("end_session_endpoint") or ""
        if not self.end_session:
            raise CheckFailed(f"the provider offers no end_session_endpoint: {sorted(meta)}")

    def stop_provider(self) -> None:
        if self.provider is None:
            return
        if self.provider.poll() is None:
            try:
                self.provider.stdin.close()  # --exit-with-stdin
                self.provider.wait(5)
            except Exception:
                pass
        if self.provider.poll() is None:
            try:
                os.killpg(self.provider.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.provider.wait()
        self.provider.stdout.close()
        self.provider = None

    def start_tilgang(self) -> None:
        policies, data = self.tmp / "policies", self.tmp / "data"
        shutil.copytree(REPO / "policies", policies)
        shutil.copytree(REPO / "tests" / "fixtures" / "data", data)
        argv = [self.tilgang_bin, "serve", "--policies", str(policies), "--data", str(data),
                "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--metrics-listen", "off"]
        if self.dev:
            self.spawn_tilgang(argv + ["--web-listen", "127.0.0.1:0"])
            return
        # The provider must know the page's redirect URI before the page
        # starts (it reads the provider's metadata at start): the page's port
        # is picked first. Another process may take it in between: then again.
        for attempt in range(1, 4):
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
            self.start_provider(f"http://127.0.0.1:{port}")
            try:
                self.spawn_tilgang(argv + [
                    "--web-listen", f"127.0.0.1:{port}", "--web-oidc-issuer", self.issuer,
                    "--web-oidc-client-id", CLIENT_ID, "--web-oidc-client-secret-file", str(self.secret_file)])
                return
            except CheckFailed:
                if attempt == 3 or "in use" not in self.tilgang_log.read_text(errors="replace").lower():
                    raise
                print(f"note: port {port} was taken before tilgang bound it; again", flush=True)
                self.stop_provider()
                self.tilgang = None

    def spawn_tilgang(self, argv: list[str]) -> None:
        log = open(self.tilgang_log, "wb")
        self.tilgang = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=child_env({"RUST_LOG": "info", "NO_COLOR": "1"}),
            start_new_session=True, preexec_fn=_die_with_parent)
        log.close()
        deadline = time.monotonic() + WAIT
        while True:
            text = self.tilgang_log.read_text(errors="replace")
            web = re.search(r"web_addr\W+(127\.0\.0\.1:\d+)", text)
            gw = re.search(r"gateway_addr\W+(127\.0\.0\.1:\d+)", text)
            if web and gw:
                self.web, self.gateway_addr = f"http://{web.group(1)}", gw.group(1)
                return
            if self.tilgang.poll() is not None:
                raise CheckFailed(f"tilgang exited ({self.tilgang.returncode}) before serving:\n{text}")
            if time.monotonic() > deadline:
                raise CheckFailed(f"tilgang printed no `web_addr=` within {WAIT:.0f} s:\n{text}")
            time.sleep(0.05)

    def start_browser(self) -> None:
        opts = webdriver.ChromeOptions()
        opts.binary_location = self.args.chromium
        for flag in CHROMIUM_FLAGS:
            opts.add_argument(flag)
        opts.add_argument(f"--user-data-dir={self.tmp / 'chromium-profile'}")
        opts.add_argument("--window-size=1280,900")
        opts.add_argument("--lang=nb-NO")
        # A Norwegian person's browser: the page speaks Bokmål by Accept-Language.
        opts.add_experimental_option("prefs", {"intl.accept_languages": "nb-NO,nb,no"})
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.service = Service(
            executable_path=self.args.chromedriver,
            log_output=str(self.tmp / "chromedriver.log"),
            # Its own process group (Chromium joins it), so the whole group
            # can be stopped by its id on the way out; and killed with us.
            popen_kw={"start_new_session": True, "preexec_fn": _die_with_parent},
        )
        self.driver = webdriver.Chrome(options=opts, service=self.service)
        self.driver.web_url = self.web  # for log_in
        self.driver.issuer = self.issuer
        self.driver.provider_page = self.provider_page
        self.driver.set_page_load_timeout(WAIT)
        self.driver.set_script_timeout(WAIT)

    def start_other_site(self) -> None:
        """Another origin on this machine (same site: 127.0.0.1, another port)
        that serves whatever HTML the test puts in `self.other_page`."""
        harness = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                page = harness.other_page.encode()
                self.send_response(200)
                self.send_header("content-type", "text/html; charset=utf-8")
                self.send_header("content-length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *_: Any) -> None:
                pass

        self.other_page = ""
        self.other_site = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.other_site.daemon_threads = True
        threading.Thread(target=self.other_site.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.driver is not None:
            try:
                self.driver.quit()
            except Exception:
                pass
            self.driver = None
        if self.service is not None:
            proc = getattr(self.service, "process", None)
            if proc is not None:
                # chromedriver and the Chromium it started: one process group.
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                try:
                    proc.wait(5)
                except Exception:
                    pass
            self.service = None
        if self.other_site is not None:
            self.other_site.shutdown()
            self.other_site.server_close()
            self.other_site = None
        if self.tilgang is not None:
            if self.tilgang.poll() is None:
                self.tilgang.send_signal(signal.SIGTERM)
                try:
                    self.tilgang.wait(15)
                except subprocess.TimeoutExpired:
                    self.tilgang.kill()
                    self.tilgang.wait()
            self.tilgang = None
        self.stop_provider()

    # -- tilgang's own answer

    def ask(self, supplier: str, scope: str) -> int:
        """`tilgang ask` against the gateway: 0 allowed, 1 denied."""
        r = subprocess.run(
            [self.tilgang_bin, "ask", "--supplier", supplier, "--owner", OWNER, "--scope", scope,
             "--addr", self.gateway_addr],
            capture_output=True, text=True, env=child_env(), timeout=WAIT)
        if r.returncode not in (0, 1):
            raise CheckFailed(f"`tilgang ask` failed ({r.returncode}): {r.stderr.strip()}")
        return r.returncode

    def check_ask(self, name: str, supplier: str, scope: str, allowed: bool) -> None:
        code = self.ask(supplier, scope)
        word = "allowed" if allowed else "denied"
        self.check(f"{name}: `tilgang ask` {supplier} {scope.split('/')[-1]}: {word}",
                   code == (0 if allowed else 1), f"exit {code}")

    # -- every page: screenshot, console, axe

    def shot(self, step: str) -> Path | None:
        if self.driver is None:
            return None
        self.shot_no += 1
        name = re.sub(r"[^a-z0-9]+", "-", step.lower()).strip("-")
        out = self.shots / f"{self.shot_no:02d}-{name}.png"
        try:
            png = self.driver.execute_cdp_cmd(
                "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
            out.write_bytes(base64.b64decode(png["data"]))
        except WebDriverException:
            self.driver.save_screenshot(str(out))
        return out

    def console_errors(self) -> list[str]:
        errors = []
        for entry in self.driver.get_log("browser"):
            msg = entry.get("message", "")
            # A 4xx page is the answer the test expects; Chromium logs its status.
            if entry.get("level") == "SEVERE" and "the server responded with a status of" not in msg:
                errors.append(msg)
        return errors

    def axe(self, step: str) -> list[dict[str, Any]]:
        if not self.axe_source:
            self.axe_source = AXE.read_text()
        d = self.driver
        if not d.execute_script("return typeof window.axe === 'object'"):
            # WebDriver's script runs through DevTools, not as a page script:
            # the page's CSP (no inline script) does not apply to it.
            d.execute_script(self.axe_source)
            if not d.execute_script("return typeof window.axe === 'object'"):
                raise CheckFailed(f"{step}: axe-core could not be injected")
        result = d.execute_async_script(
            """
            const done = arguments[arguments.length - 1];
            axe.run(document, {runOnly: {type: 'tag', values: arguments[0]}, resultTypes: ['violations']})
              .then(r => done({violations: r.violations.map(v => ({
                  id: v.id, impact: v.impact, help: v.help, helpUrl: v.helpUrl, tags: v.tags,
                  nodes: v.nodes.map(n => ({target: n.target, html: n.html, summary: n.failureSummary}))}))}))
              .catch(e => done({error: String(e)}));
            """,
            WCAG_TAGS)
        if "error" in result:
            raise CheckFailed(f"{step}: axe.run failed: {result['error']}")
        return result["violations"]

    def provider_page(self, step: str) -> None:
        """A page of the OpenID provider's: not ours, so no axe and no console
        check; a screenshot, and its console drained (so that nothing it logs
        is blamed on our next page) and noted."""
        self.shot(step)
        for msg in self.console_errors():
            self.provider_notes.append(f"{step}: {msg}")

    def on_provider(self) -> bool:
        return self.driver.current_url.startswith(self.issuer + "/")

    def page(self, step: str) -> None:
        """The current page: a screenshot, no console error, no axe violation."""
        out = self.shot(step)
        errors = self.console_errors()
        self.check(f"{step}: no console error (CSP, script, resource)", not errors, "\n      ".join(errors))
        violations = self.axe(step)
        lines = []
        for v in violations:
            lines.append(f"[{v['impact']}] {v['id']}: {v['help']} ({v['helpUrl']})")
            for n in v["nodes"]:
                lines.append(f"    at {' '.join(map(str, n['target']))}: {n['html']}")
                lines.append("      " + (n["summary"] or "").replace("\n", "\n      "))
        if violations:
            self.axe_findings.append(f"{step} ({path(self.driver)}):\n  " + "\n  ".join(lines))
        self.check(f"{step}: axe WCAG 2.1 A/AA: 0 violations ({out.name if out else 'no screenshot'})",
                   not violations, "\n      ".join(lines))

    # -- scenarios

    def delegate(self) -> None:
        d = self.driver
        d.get(self.web + "/overview")
        self.require("not logged in: the login page (401)", status(d) == 401 and self.login_offered(),
                     f"status {status(d)} at {path(d)}")
        if self.dev:
            self.check("the development-mode banner is shown", "Utviklingsmodus" in body(d))
        else:
            self.check("with a provider: no development-mode banner, no Fødselsnummer field",
                       "Utviklingsmodus" not in body(d) and not d.find_elements(By.ID, "person"), body(d)[:300])
        self.check("the page speaks Bokmål", d.find_element(By.TAG_NAME, "html").get_attribute("lang") == "nb")
        self.page("login")
        # axe itself: a known violation (an image without a text alternative) is found.
        d.execute_script("const i = document.createElement('img'); i.id = 'axe-self-test';"
                         "i.src = '/nothing.png'; document.querySelector('main').appendChild(i);")
        found = [v["id"] for v in self.axe("axe self-test")]
        d.execute_script("document.getElementById('axe-self-test').remove()")
        self.console_errors()  # the missing image's 404
        self.check("axe self-test: a planted image without alt text is reported (image-alt)",
                   "image-alt" in found, str(found))
        log_in(d, DAGL)
        self.require("DAGL logged in: the overview", path(d) == "/overview" and status(d) == 200,
                     f"{path(d)} {status(d)}: {body(d)[:300]}")
        self.check("DAGL acts for 991 825 827 (the header)",
                   OWNER_SPACED in d.find_element(By.CSS_SELECTOR, "header .user").text,
                   d.find_element(By.CSS_SELECTOR, "header .user").text)
        if not self.dev:
            self.check("DAGL named as the provider's ID token names her (Dagny Daglig Leder)",
                       "Dagny Daglig Leder" in d.find_element(By.CSS_SELECTOR, "header .user").text)
        self.check("overview: its heading and the fixture's supplier, spaced",
                   h1(d) == "Tilgang til programmeringsgrensesnitt – API" and FIXTURE_SUPPLIER_SPACED in body(d),
                   body(d)[:400])
        self.check("overview: 889 640 782 not there yet", SUPPLIER_SPACED not in body(d))
        self.page("overview")
        for lang, word in (("nn", "Rediger tilgangar"), ("en", "Add supplier")):
            d.get(f"{self.web}/overview?lang={lang}")
            self.check(f"overview in {lang}", word in body(d))
            self.page(f"overview-{lang}")
        d.get(self.web + "/received?lang=nb")
        self.check("received: its page", status(d) == 200 and h1(d) == "Mottatte API-tilganger", h1(d))
        self.page("received")
        d.get(self.web + "/overview")

        submit(d, button(d, "Legg til leverandør"))
        self.require("add: the organisation number step", path(d) == "/add", path(d))
        self.page("add")
        org = d.find_element(By.ID, "org")
        org.send_keys(SUPPLIER_SPACED)
        submit(d, button(d, "Gå videre"))
        self.require("add: 889 640 782 typed with spaces is taken: the rights step",
                     path(d) == "/add/rights", f"{path(d)}: {body(d)[:300]}")
        self.check("rights: the legend names the supplier, spaced",
                   SUPPLIER_SPACED in d.find_element(By.TAG_NAME, "legend").text)
        self.page("rights")
        box = d.find_element(By.CSS_SELECTOR, f"input[type=checkbox][value='{RIGHT_READ}']")
        box.click()
        self.check("rights: instances-read ticked", box.is_selected())
        submit(d, button(d, "Gå videre"))
        self.require("rights: the confirm step", path(d) == "/add/confirm", path(d))
        summary = d.find_element(By.CSS_SELECTOR, "dl.summary").text
        self.check("confirm: names the supplier and the right",
                   SUPPLIER_SPACED in summary and "Appinstanser (lesetilgang)" in summary, summary)
        self.check("confirm: nothing given yet", self.ask(SUPPLIER, READ) == 1)
        self.page("confirm")
        submit(d, button(d, "Bekreft"))
        self.require("confirm: the receipt", path(d).startswith("/receipt/") and h1(d) == "Tilgangen er gitt",
                     f"{path(d)}: {body(d)[:300]}")
        self.check("receipt: names the supplier and the right",
                   SUPPLIER_SPACED in body(d) and "Appinstanser (lesetilgang)" in body(d))
        self.page("receipt-given")
        submit(d, button(d, "Til oversikten"))
        self.require("receipt: back to the overview", path(d) == "/overview", path(d))
        rows = [r.text for r in d.find_elements(By.CSS_SELECTOR, "tbody th[scope=row]")]
        self.check("overview: 889 640 782 is listed", SUPPLIER_SPACED in rows, f"rows: {rows}")
        self.page("overview-with-supplier")
        self.check_ask("delegated", SUPPLIER, READ, True)
        self.check_ask("delegated", SUPPLIER, WRITE, False)

    def edit_and_undo(self) -> None:
        d = self.driver
        d.get(self.web + "/overview")

        def remove(step: str) -> None:
            link = d.find_element(By.CSS_SELECTOR, f"a[href='/edit/{SUPPLIER}']")
            self.check(f"{step}: the edit link names the supplier (hidden text)",
                       SUPPLIER_SPACED in (link.get_attribute("textContent") or ""))
            submit(d, link)
            self.require(f"{step}: the edit page", path(d) == f"/edit/{SUPPLIER}" and h1(d) == "Rediger tilganger",
                         f"{path(d)} {h1(d)}")
            box = d.find_element(By.CSS_SELECTOR, f"input[type=checkbox][value='{RIGHT_READ}']")
            self.check(f"{step}: instances-read is ticked", box.is_selected())
            self.page(step)
            box.click()
            submit(d, button(d, "Lagre"))
            self.require(f"{step}: saved: the receipt",
                         path(d).startswith("/receipt/") and h1(d) == "Tilgangene er fjernet",
                         f"{path(d)}: {body(d)[:300]}")

        remove("edit")
        self.check("removed: the receipt offers “Angre”", button(d, "Angre") is not None)
        self.page("receipt-removed")
        self.check_ask("removed", SUPPLIER, READ, False)
        submit(d, button(d, "Angre"))
        self.require("undo: the receipt says so", h1(d) == "Endringen er angret", f"{path(d)}: {body(d)[:300]}")
        self.page("receipt-undone")
        self.check_ask("undone", SUPPLIER, READ, True)
        submit(d, button(d, "Til oversikten"))
        self.check("undone: the overview lists 889 640 782 again", SUPPLIER_SPACED in body(d))
        remove("edit-again")
        self.check_ask("removed again", SUPPLIER, READ, False)
        submit(d, button(d, "Til oversikten"))
        self.check("removed again: the overview no longer lists 889 640 782", SUPPLIER_SPACED not in body(d))

    def error_summary(self, step: str, field_id: str, says: str) -> None:
        """The error state of a form: summary shown and focused, linking to the field."""
        d = self.driver
        summaries = d.find_elements(By.CSS_SELECTOR, ".error-summary")
        self.require(f"{step}: the error summary is shown", len(summaries) == 1 and summaries[0].is_displayed(),
                     body(d)[:300])
        summary = summaries[0]
        self.check(f"{step}: it says {says!r}", says in summary.text, summary.text)
        self.check(f"{step}: the answer is 422", status(d) == 422, str(status(d)))
        try:
            WebDriverWait(d, 3, poll_frequency=0.05).until(lambda _: d.execute_script(
                "return document.activeElement && document.activeElement.closest('.error-summary') !== null"))
            focused = True
        except TimeoutException:
            focused = False
        self.check(f"{step}: the summary has focus", focused,
                   f"document.activeElement is {describe(d, active(d))}")
        links = summary.find_elements(By.CSS_SELECTOR, "a")
        self.check(f"{step}: it links to the field (#{field_id})",
                   [a.get_attribute("hash") for a in links] == [f"#{field_id}"],
                   str([a.get_attribute("href") for a in links]))
        field = d.find_element(By.ID, field_id)
        self.check(f"{step}: the field is aria-invalid=\"true\"", field.get_attribute("aria-invalid") == "true")
        described = (field.get_attribute("aria-describedby") or "").split()
        self.check(f"{step}: the field is described by its error message",
                   any(d.find_element(By.ID, i).text == links[0].text for i in described
                       if d.find_elements(By.ID, i)) if links else False, str(described))
        self.page(step)
        if links and focused:
            # By keyboard: from the focused summary, Tab to its link, Enter.
            press(d, Keys.TAB)
            self.check(f"{step}: Tab from the summary reaches its link", active(d) == links[0],
                       describe(d, active(d)))
            press(d, Keys.ENTER)
            self.check(f"{step}: Enter on the link targets the field",
                       d.execute_script("return location.hash") == f"#{field_id}"
                       and d.execute_script("return document.querySelector(':target') === arguments[0]", field))
            # An input gets the focus; a fieldset (not focusable) becomes
            # where sequential navigation starts, so Tab lands in it.
            inside = "return arguments[0] === document.activeElement || arguments[0].contains(document.activeElement)"
            at = describe(d, active(d))
            reached = d.execute_script(inside, field)
            if not reached:
                press(d, Keys.TAB)
                reached = d.execute_script(inside, field)
            self.check(f"{step}: following the link brings the keyboard to the field", reached,
                       f"focus on {at}, then {describe(d, active(d))}")

    def bad_input(self) -> None:
        d = self.driver
        d.get(self.web + "/add")
        self.require("add: the organisation number step", path(d) == "/add", path(d))
        for typed, step, says in (("123", "error-format", "må være 9 siffer"),
                                  ("889640783", "error-check-digit", "ikke gyldig")):
            org = d.find_element(By.ID, "org")
            org.clear()
            org.send_keys(typed)
            submit(d, button(d, "Gå videre"))
            self.error_summary(f"{step} ({typed})", "org", says)
            self.check(f"{step}: what was typed is kept",
                       d.find_element(By.ID, "org").get_attribute("value") == typed)
        org = d.find_element(By.ID, "org")
        org.clear()
        org.send_keys(SUPPLIER)
        submit(d, button(d, "Gå videre"))
        self.require("add: a valid number goes on", path(d) == "/add/rights", path(d))
        submit(d, button(d, "Gå videre"))
        self.error_summary("error-nothing-chosen", "rights", "Velg minst én tilgang")
        submit(d, button(d, "Avbryt"))
        self.check("cancel: back to the overview", path(d) == "/overview", path(d))
        self.check_ask("bad input", SUPPLIER, READ, False)

    def forged(self) -> None:
        d = self.driver
        d.get(self.web + "/add")
        org = d.find_element(By.ID, "org")
        # "Avbryt" keeps the draft: the field may show the number typed last.
        org.clear()
        org.send_keys(SUPPLIER)
        submit(d, button(d, "Gå videre"))
        self.require("forgery: the rights step", path(d) == "/add/rights", f"{path(d)}: {body(d)[:200]}")
        d.find_element(By.CSS_SELECTOR, f"input[type=checkbox][value='{RIGHT_FULL}']").click()
        submit(d, button(d, "Gå videre"))
        self.require("forgery: on the confirm step with instances-full", path(d) == "/add/confirm", path(d))
        nonce = d.find_element(By.CSS_SELECTOR, "input[name=nonce]").get_attribute("value")
        csrf = d.find_element(By.CSS_SELECTOR, "form[action='/add/confirm'] input[name=csrf]").get_attribute("value")
        # A form on the page itself, without the CSRF token, submitted by script.
        navigates(d, lambda: d.execute_script(
            """
            const f = document.createElement('form');
            f.method = 'post'; f.action = '/add/confirm';
            const n = document.createElement('input');
            n.type = 'hidden'; n.name = 'nonce'; n.value = arguments[0];
            f.appendChild(n); document.body.appendChild(f); f.submit();
            """, nonce))
        self.check("forgery: a same-origin form without the CSRF token is refused (403)", status(d) == 403,
                   f"{status(d)} {path(d)}: {body(d)[:200]}")
        self.check("forgery: the page says the form expired", "Skjemaet er utløpt" in body(d), body(d)[:300])
        self.page("forged-no-token")
        self.check_ask("forged without token", SUPPLIER, READ, False)
        self.check_ask("forged without token", SUPPLIER, WRITE, False)

        # Another origin (same site: 127.0.0.1, another port) posting the real
        # token with the browser's cookie: refused by Origin/Sec-Fetch-Site.
        self.other_page = (
            "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Another site</title></head>"
            "<body><main><h1>Another site</h1>"
            f"<form method='post' action='{self.web}/add/confirm'>"
            f"<input type='hidden' name='csrf' value='{csrf}'><input type='hidden' name='nonce' value='{nonce}'>"
            "<button type='submit'>Send</button></form></main></body></html>")
        d.get(f"http://127.0.0.1:{self.other_site.server_address[1]}/")
        submit(d, d.find_element(By.CSS_SELECTOR, "button"))
        self.check("forgery: a form from another origin, with the real token, is refused (403)",
                   status(d) == 403 and "Skjemaet er utløpt" in body(d), f"{status(d)} {path(d)}: {body(d)[:200]}")
        self.shot("forged-other-origin")
        self.console_errors()
        self.check_ask("forged from another origin", SUPPLIER, READ, False)
        self.check_ask("forged from another origin", SUPPLIER, WRITE, False)
        d.get(self.web + "/add/confirm")
        self.check("forgery: the draft is still unconfirmed (confirm page, nothing given)",
                   path(d) == "/add/confirm" and self.ask(SUPPLIER, WRITE) == 1, path(d))
        submit(d, button(d, "Avbryt"))

    def tab_to(self, step: str, what: str, matches: Callable[[WebElement], bool], limit: int = 40) -> WebElement:
        """Press Tab until the focused element `matches`; check its focus is visible."""
        d = self.driver
        seen = []
        for _ in range(limit):
            press(d, Keys.TAB)
            el = active(d)
            seen.append(describe(d, el))
            if matches(el):
                self.check(f"{step}: Tab reaches {what} ({len(seen)} presses), its focus visible",
                           focus_visible(d, el), f"no visible focus on {seen[-1]}")
                self.shot(f"{step}-focus")
                return el
        raise CheckFailed(f"{step}: {limit} Tab presses did not reach {what}; focus went: {' → '.join(seen)}")

    def keyboard(self) -> None:
        d = self.driver
        d.get(self.web + "/overview")
        self.require("keyboard: on the overview", path(d) == "/overview", path(d))
        press(d, Keys.TAB)
        first = active(d)
        self.check("keyboard: the first Tab is the skip link, shown when focused",
                   first.get_attribute("class") == "skip" and first.is_displayed()
                   and first.rect["x"] >= 0 and focus_visible(d, first), describe(d, first))
        self.shot("keyboard-skip-link")
        press(d, Keys.ENTER)
        self.check("keyboard: the skip link moves focus to main",
                   d.execute_script("return document.activeElement.id") == "main",
                   describe(d, active(d)))
        self.tab_to("keyboard-overview", "“Legg til leverandør”",
                    lambda e: (e.get_attribute("href") or "").endswith("/add"))
        navigates(d, lambda: press(d, Keys.ENTER))
        self.require("keyboard: Enter on the link opens the add step", path(d) == "/add", path(d))
        self.tab_to("keyboard-add", "the organisation number field", lambda e: e.get_attribute("id") == "org")
        ActionChains(d).send_keys(SUPPLIER_SPACED).perform()
        self.tab_to("keyboard-add-next", "“Gå videre”", lambda e: e.text == "Gå videre")
        navigates(d, lambda: press(d, Keys.ENTER))
        self.require("keyboard: Enter on “Gå videre”: the rights step", path(d) == "/add/rights",
                     f"{path(d)}: {body(d)[:200]}")
        box = self.tab_to("keyboard-rights", "the instances-full checkbox",
                          lambda e: e.get_attribute("value") == RIGHT_FULL)
        press(d, Keys.SPACE)
        self.check("keyboard: Space ticks it", box.is_selected())
        self.shot("keyboard-rights-ticked")
        self.tab_to("keyboard-rights-next", "“Gå videre”", lambda e: e.text == "Gå videre")
        navigates(d, lambda: press(d, Keys.SPACE))
        self.require("keyboard: Space on “Gå videre”: the confirm step", path(d) == "/add/confirm",
                     f"{path(d)}: {body(d)[:200]}")
        self.check("keyboard: confirm names instances-full", "Appinstanser (full tilgang)" in body(d))
        self.tab_to("keyboard-confirm", "“Bekreft”", lambda e: e.text == "Bekreft")
        navigates(d, lambda: press(d, Keys.ENTER))
        self.require("keyboard: Enter on “Bekreft”: the receipt", h1(d) == "Tilgangen er gitt",
                     f"{path(d)}: {body(d)[:200]}")
        self.tab_to("keyboard-receipt", "“Til oversikten”", lambda e: e.text == "Til oversikten")
        navigates(d, lambda: press(d, Keys.ENTER))
        self.require("keyboard: back on the overview", path(d) == "/overview", path(d))
        self.check("keyboard: the overview lists 889 640 782", SUPPLIER_SPACED in body(d))
        self.page("keyboard-overview-after")
        self.check_ask("delegated by keyboard", SUPPLIER, WRITE, True)

    def login_offered(self) -> bool:
        """Our login page: the Fødselsnummer field (development mode) or the
        "Logg inn med ID-porten" link."""
        if self.dev:
            return self.driver.find_elements(By.ID, "person") != []
        return self.driver.find_elements(By.CSS_SELECTOR, "main a[href='/auth/login']") != []

    def log_out(self, step: str) -> None:
        """"Logg ut" in the header; with a provider, through its end-session
        endpoint (and its confirmation page, if it shows one) back to /login."""
        d = self.driver
        submit(d, d.find_element(By.CSS_SELECTOR, "header form[action='/logout'] button"))
        if not self.dev:
            self.check(f"{step}: “Logg ut” goes to the provider's end-session endpoint",
                       self.on_provider(), d.current_url)
            self.end_provider_session(step)
        self.require(f"{step}: back on our login page", d.current_url.startswith(self.web + "/login")
                     and self.login_offered(), f"{d.current_url}: {body(d)[:300]}")

    def end_provider_session(self, step: str) -> None:
        """On the provider's end-session page: confirm the logout, if asked."""
        d = self.driver
        if not self.on_provider():
            return
        self.provider_page(f"{step}-provider")
        # oidc-provider's page: "Yes, sign me out" (name=logout value=yes)
        # and "No, stay signed in".
        yes = (d.find_elements(By.CSS_SELECTOR, "button[name=logout][value=yes]")
               or d.find_elements(By.CSS_SELECTOR, "form button[type=submit]"))
        if yes:
            self.check(f"{step}: the provider asks to confirm the logout", True)
            submit(d, yes[0])
            if self.on_provider():
                self.provider_page(f"{step}-provider-done")

    def no_key_role(self) -> None:
        d = self.driver
        d.get(self.web + "/overview")
        if self.dev:
            self.log_out("logged out")
            field = d.find_element(By.ID, "person")
            field.send_keys("not a number!")
            submit(d, d.find_element(By.CSS_SELECTOR, "form[action='/login'] button[type=submit]"))
            self.error_summary("error-login", "person", "Skriv inn et fødselsnummer")
            log_in(d, NO_ROLE)
            self.check("no key role: refused (403)", status(d) == 403, f"{status(d)} {path(d)}")
            self.check("no key role: told in plain words", "Daglig leder kan hjelpe" in body(d), body(d)[:400])
            self.check("no key role: no way to add a supplier",
                       not d.find_elements(By.CSS_SELECTOR, "a[href='/add']"))
            self.page("no-key-role")
            return

        # Logout ends the session here and at the provider.
        self.log_out("logout")
        self.page("logged-out")
        d.get(self.web + "/overview")
        self.check("logged out: the overview asks for login again (401)",
                   status(d) == 401 and self.login_offered() and OWNER_SPACED not in body(d),
                   f"{status(d)} {path(d)}: {body(d)[:300]}")
        self.page("overview-logged-out")

        # A login at too low a level (`lav`, idporten-loa-low) is refused by
        # the page. The provider asks who logs in again: its session ended.
        log_in(d, LOW_LEVEL)
        self.check("low level: back on our login page, refused (401)",
                   status(d) == 401 and self.login_offered(), f"{status(d)} {d.current_url}")
        self.check("low level: “Innloggingen mislyktes”", "Innloggingen mislyktes" in body(d), body(d)[:300])
        self.check("low level: not logged in (no “Logg ut”)",
                   not d.find_elements(By.CSS_SELECTOR, "form[action='/logout']"))
        self.page("login-refused-low-level")
        d.get(self.web + "/overview")
        self.check("low level: the overview still asks for login (401)",
                   status(d) == 401 and self.login_offered(), f"{status(d)} {path(d)}")
        # The refused login is still logged in at the provider (the page
        # never had its ID token to log it out): end it there, as a person
        # would by logging out at ID-porten, so the next login asks again.
        d.get(self.end_session)
        self.end_provider_session("low-level-provider-logout")

        # 02029054321 (`hoy`) has a role only for 983 887 457: none for
        # 991 825 827. (The provider has no account without any role.)
        log_in(d, OTHER_OWNER_ADMIN)
        self.require("other owner's admin: logged in, the overview", path(d) == "/overview" and status(d) == 200,
                     f"{status(d)} {path(d)}: {body(d)[:300]}")
        header = d.find_element(By.CSS_SELECTOR, "header .user").text
        self.check("other owner's admin: acts for 983 887 457, not 991 825 827",
                   OTHER_OWNER_SPACED in header and OWNER_SPACED not in header, header)
        self.check("other owner's admin: 991 825 827's supplier 810 418 672 not shown",
                   FIXTURE_SUPPLIER_SPACED not in body(d), body(d)[:400])
        self.check("other owner's admin: one organisation, no link to change it", not d.find_elements(
            By.CSS_SELECTOR, "header a[href='/org']"))
        self.page("other-owner-overview")
        # Acting for 991 825 827 anyway: the choice of organisation, posted
        # with this session's real CSRF token and that number.
        csrf = d.find_element(By.CSS_SELECTOR, "header form[action='/logout'] input[name=csrf]").get_attribute("value")
        navigates(d, lambda: d.execute_script(
            """
            const f = document.createElement('form');
            f.method = 'post'; f.action = '/org';
            for (const [k, v] of [['csrf', arguments[0]], ['org', arguments[1]]]) {
              const i = document.createElement('input');
              i.type = 'hidden'; i.name = k; i.value = v; f.appendChild(i);
            }
            document.body.appendChild(f); f.submit();
            """, csrf, OWNER))
        self.check("no key role for 991 825 827: refused (403)", status(d) == 403, f"{status(d)} {path(d)}")
        self.check("no key role: told in plain words", "Daglig leder kan hjelpe" in body(d), body(d)[:400])
        self.check("no key role: no way to add a supplier", not d.find_elements(By.CSS_SELECTOR, "a[href='/add']"))
        self.page("no-key-role")
        d.get(self.web + "/add")
        self.check("no key role: still acting for 983 887 457 (add step header)",
                   OTHER_OWNER_SPACED in d.find_element(By.CSS_SELECTOR, "header .user").text,
                   d.find_element(By.CSS_SELECTOR, "header .user").text)
        self.log_out("logout-other-owner")

    def run(self) -> None:
        self.start_tilgang()
        self.start_browser()
        self.start_other_site()
        login = "development mode (--dev-login)" if self.dev else f"OpenID provider {self.issuer}"
        print(f"tilgang web {self.web}, gateway {self.gateway_addr}; login: {login}; "
              f"Chromium {self.driver.capabilities.get('browserVersion')}; screenshots in {self.shots}", flush=True)
        self.scenario("1 delegate", self.delegate)
        self.scenario("2 edit and undo", self.edit_and_undo)
        self.scenario("3 bad input", self.bad_input)
        self.scenario("4 forged forms", self.forged)
        self.scenario("5 keyboard only", self.keyboard)
        self.scenario("6 no key role", self.no_key_role)


def preflight(args: argparse.Namespace) -> list[str]:
    problems = []
    if not args.dev_login:
        if not shutil.which(args.node):
            problems.append(f"no {args.node} (Node.js 20.19 or later runs the OpenID provider)")
        if not (PROVIDER / "node_modules" / "oidc-provider").is_dir():
            problems.append(f"no {(PROVIDER / 'node_modules').relative_to(REPO)} "
                            f"(npm ci --prefix {PROVIDER.relative_to(REPO)})")
    if not Path(args.tilgang).is_file():
        problems.append(f"no tilgang binary at {args.tilgang} (cargo build)")
    if not AXE.is_file():
        problems.append(f"no {AXE.relative_to(REPO)} (npm ci --prefix tests/e2e/web)")
    for what, p, pkg in (("Chromium", args.chromium, "chromium"), ("chromedriver", args.chromedriver, "chromium-driver")):
        if not (Path(p).is_file() and os.access(p, os.X_OK)):
            problems.append(f"no {what} at {p} (apt-get install {pkg})")
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tilgang", default=str(REPO / "target" / "debug" / "tilgang"))
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--chromedriver", default="/usr/bin/chromedriver")
    ap.add_argument("--screenshots", default=str(REPO / "target" / "e2e-web-screenshots"))
    ap.add_argument("--keep", action="store_true", help="keep the temp directory (logs, data) afterwards")
    ap.add_argument("--dev-login", action="store_true",
                    help="development mode's typed-in login instead of the OpenID provider")
    ap.add_argument("--node", default="node", help="Node.js, for the OpenID provider (default: node on PATH)")
    args = ap.parse_args()
    global log_in
    log_in = log_in_dev if args.dev_login else log_in_oidc
    # Selenium must not look for or download a driver or browser of its own.
    os.environ["SE_OFFLINE"] = "true"

    problems = preflight(args)
    if problems:
        for p in problems:
            print(f"error: {p}", file=sys.stderr)
        print("web-e2e: 0 passed, 1 failed")
        return 2

    def _exit(signum: int, _frame: Any) -> None:
        raise Interrupted(signum)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _exit)
    signal.signal(signal.SIGHUP, _exit)

    h = Harness(args)
    h.shots.mkdir(parents=True, exist_ok=True)
    for old in h.shots.glob("*.png"):
        old.unlink()
    interrupted = 0
    try:
        h.run()
    except CheckFailed as e:
        h.check(f"start-up: {e}", False)
    except KeyboardInterrupt as e:
        interrupted = getattr(e, "signum", signal.SIGINT.value)
    except Exception:
        h.check("the test itself", False, traceback.format_exc())
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        h.stop()
        if h.failed and h.tilgang_log.exists():
            print("--- tilgang's log (last 40 lines)")
            print("\n".join(h.tilgang_log.read_text(errors="replace").splitlines()[-40:]))
        if h.failed and h.provider_log.exists() and h.provider_log.stat().st_size:
            print("--- the OpenID provider's stderr (last 20 lines)")
            print("\n".join(h.provider_log.read_text(errors="replace").splitlines()[-20:]))
        if h.provider_notes:
            print("--- console errors on the provider's pages (not ours; not checked)")
            print("\n".join(h.provider_notes))
        if h.axe_findings:
            print("--- axe findings")
            print("\n".join(h.axe_findings))
        if args.keep:
            print(f"kept {h.tmp}")
        else:
            shutil.rmtree(h.tmp, ignore_errors=True)
    if interrupted:
        print(f"interrupted (signal {interrupted})")
        h.failed.append("interrupted")
    print(f"web-e2e: {h.passed} passed, {len(h.failed)} failed")
    if interrupted:
        return 128 + interrupted
    return 1 if h.failed else 0


if __name__ == "__main__":
    sys.exit(main())
