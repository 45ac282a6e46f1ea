#!/usr/bin/env python3
"""Headless-Chromium check of the keypulse dashboard (used by scripts/check-dashboard).

Drives Chromium over the DevTools protocol on a pipe (--remote-debugging-pipe), with the
Python standard library only. Checks, at BASE_URL:
  0. with a token (--token, or KEYPULSE_DASHBOARD_TOKEN): `/` first shows the login form
     and draws nothing; the token typed into the form then signs in;
  1. `/` renders every [data-chart] with data-rendered="true" (desktop viewport);
  2. no console error, uncaught exception or failed load (Log/Runtime events);
  3. a churn-risk link opens the customer page, whose charts render too;
and saves full-page screenshots (desktop and phone) of both pages into OUT_DIR.
Exit status 0 when every check passed, 1 otherwise (with the reasons on stderr).
"""

import argparse
import base64
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

DESKTOP = {"width": 1366, "height": 900, "deviceScaleFactor": 1, "mobile": False}
PHONE = {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True}


class Chromium:
    """A headless Chromium and one page session on it."""

    def __init__(self, binary, timeout):
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="keypulse-chromium-")
        cmd_r, self.cmd_w = os.pipe()  # we write commands; Chromium reads fd 3
        self.res_r, res_w = os.pipe()  # Chromium writes fd 4; we read

        def child_fds():
            a = fcntl.fcntl(cmd_r, fcntl.F_DUPFD, 10)
            b = fcntl.fcntl(res_w, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)

        args = [
            binary, "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--no-default-browser-check",
            "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio",
            "--user-data-dir=" + self.profile, "--remote-debugging-pipe", "about:blank",
        ]
        self.log = open(os.path.join(self.profile, "chromium.log"), "wb")
        self.proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log,
            preexec_fn=child_fds, close_fds=False,
        )
        os.close(cmd_r)
        os.close(res_w)
        self.next_id = 0
        self.lock = threading.Condition()
        self.replies = {}
        self.events = []
        self.closed = False
        threading.Thread(target=self._reader, daemon=True).start()
        self.session = None

    def _reader(self):
        buf = b""
        while True:
            try:
                chunk = os.read(self.res_r, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                with self.lock:
                    self.closed = True
                    self.lock.notify_all()
                return
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw.decode("utf-8"))
                with self.lock:
                    if "id" in msg:
                        self.replies[msg["id"]] = msg
                    else:
                        self.events.append(msg)
                    self.lock.notify_all()

    def send(self, method, params=None, session=True):
        with self.lock:
            self.next_id += 1
            mid = self.next_id
        msg = {"id": mid, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        os.write(self.cmd_w, json.dumps(msg).encode("utf-8") + b"\0")
        deadline = time.time() + self.timeout
        with self.lock:
            while mid not in self.replies:
                if self.closed:
                    raise RuntimeError("Chromium exited (see %s)" % self.log.name)
                left = deadline - time.time()
                if left <= 0:
                    raise RuntimeError("no answer to %s" % method)
                self.lock.wait(left)
            reply = self.replies.pop(mid)
        if "error" in reply:
            raise RuntimeError("%s: %s" % (method, reply["error"]))
        return reply.get("result", {})

    def open_page(self):
        target = self.send("Target.createTarget", {"url": "about:blank"}, session=False)
        att = self.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}, session=False)
        self.session = att["sessionId"]
        for m in ("Page.enable", "Runtime.enable", "Log.enable"):
            self.send(m)

    def eval(self, expr):
        r = self.send("Runtime.evaluate", {"expression": expr, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in r:
            raise RuntimeError("evaluate failed: %s" % r["exceptionDetails"].get("text"))
        return r.get("result", {}).get("value")

    def viewport(self, metrics):
        self.send("Emulation.setDeviceMetricsOverride", dict(metrics))

    def screenshot(self, path, metrics, slice_height=0):
        """A full-page PNG at `path`; with `slice_height`, also PATH-1.png, PATH-2.png, ...
        of that height each (tall phone pages are easier to look at in pieces)."""
        size = self.send("Page.getLayoutMetrics")
        css = size.get("cssContentSize") or size.get("contentSize")
        height = int(min(max(css["height"], metrics["height"]), 12000))
        self.viewport(dict(metrics, height=height))
        time.sleep(0.4)
        shot = self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
        with open(path, "wb") as f:
            f.write(base64.b64decode(shot["data"]))
        if slice_height:
            stem = path[:-4] if path.endswith(".png") else path
            for i, y in enumerate(range(0, height, slice_height)):
                clip = {"x": 0, "y": y, "width": metrics["width"],
                        "height": min(slice_height, height - y), "scale": 1}
                part = self.send("Page.captureScreenshot",
                                 {"format": "png", "captureBeyondViewport": True, "clip": clip})
                with open("%s-%d.png" % (stem, i + 1), "wb") as f:
                    f.write(base64.b64decode(part["data"]))
        self.viewport(metrics)

    def problems(self, allow_401_before=0):
        """Console errors, uncaught exceptions and failed loads seen so far (the 401s of
        the first `allow_401_before` events excepted: those of the sign-in itself)."""
        out = []
        with self.lock:
            events = list(self.events)
        for i, e in enumerate(events):
            if i < allow_401_before and e.get("method") == "Log.entryAdded":
                en = e.get("params", {}).get("entry", {})
                if en.get("source") == "network" and "401" in en.get("text", ""):
                    continue
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                text = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
                out.append("console.%s: %s" % (p.get("type"), text))
            elif m == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                desc = (d.get("exception") or {}).get("description") or d.get("text")
                out.append("uncaught exception: %s" % desc)
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                en = p["entry"]
                out.append("log error (%s): %s %s" % (en.get("source"), en.get("text"), en.get("url", "")))
        return out

    def close(self):
        try:
            self.send("Browser.close", session=False)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        shutil.rmtree(self.profile, ignore_errors=True)


CHART_STATE = """(() => {
  const c = [...document.querySelectorAll('[data-chart]')];
  return {page: document.body ? document.body.getAttribute('data-page') : null,
          href: location.href, n: c.length,
          pending: c.filter(e => e.getAttribute('data-rendered') !== 'true')
                    .map(e => e.getAttribute('data-chart') + '=' + (e.getAttribute('data-rendered') || 'not drawn'))};
})()"""


def wait_charts(b, page, timeout):
    deadline = time.time() + timeout
    state = None
    while time.time() < deadline:
        try:
            state = b.eval(CHART_STATE)
        except RuntimeError:
            state = None  # navigating
        if state and state["page"] == page and state["n"] > 0 and not state["pending"]:
            return state, True
        time.sleep(0.25)
    return state, False


LOGIN_STATE = """(() => {
  const f = document.getElementById('login');
  return {form: !!f && !f.hidden,
          drawn: [...document.querySelectorAll('[data-chart]')]
                   .filter(e => e.getAttribute('data-rendered') === 'true').length};
})()"""


def sign_in(b, token, timeout):
    """Waits for the login form (nothing drawn), types the token, submits. Returns the
    number of events seen before the submission, or a failure message."""
    deadline = time.time() + timeout
    state = None
    while time.time() < deadline:
        try:
            state = b.eval(LOGIN_STATE)
        except RuntimeError:
            state = None
        if state and state["form"]:
            break
        time.sleep(0.25)
    else:
        return None, "login form not shown without a token (last: %s)" % state
    time.sleep(1.0)  # a refresh or two without the token: still nothing drawn
    state = b.eval(LOGIN_STATE)
    if state["drawn"]:
        return None, "%d charts drawn before signing in" % state["drawn"]
    with b.lock:
        seen = len(b.events)
    b.eval("""(() => { document.getElementById('token').value = %s;
                      document.getElementById('login').requestSubmit(); })()""" % json.dumps(token))
    print("login: form shown, nothing drawn; token submitted")
    return seen, None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("base_url")
    ap.add_argument("--chromium", default=os.environ.get("KEYPULSE_CHROMIUM", "chromium"))
    ap.add_argument("--out", default="target/screenshots")
    ap.add_argument("--timeout", type=float, default=45.0, help="seconds to wait for the charts")
    ap.add_argument("--token", default=os.environ.get("KEYPULSE_DASHBOARD_TOKEN", ""),
                    help="sign in with this token (default: $KEYPULSE_DASHBOARD_TOKEN)")
    args = ap.parse_args()
    base = args.base_url.rstrip("/")
    os.makedirs(args.out, exist_ok=True)
    failures = []
    b = Chromium(args.chromium, timeout=60)
    try:
        b.open_page()
        b.viewport(DESKTOP)
        b.send("Page.navigate", {"url": base + "/"})
        allow_401 = 0
        if args.token:
            seen, problem = sign_in(b, args.token, args.timeout)
            if problem:
                failures.append("dashboard: " + problem)
            else:
                allow_401 = seen
        state, ok = wait_charts(b, "overview", args.timeout)
        if not ok:
            failures.append("dashboard: charts not rendered with data: %s" % (state and state["pending"] or state))
        else:
            print("dashboard: %d charts rendered with data" % state["n"])
        b.screenshot(os.path.join(args.out, "dashboard-desktop.png"), DESKTOP)
        b.viewport(PHONE)
        time.sleep(1.0)
        b.screenshot(os.path.join(args.out, "dashboard-phone.png"), PHONE, slice_height=1600)
        b.viewport(DESKTOP)
        time.sleep(0.5)

        link = b.eval("""(() => { const a = document.querySelector('[data-chart="churn-risk"] a[href]');
                            return a ? a.getAttribute('href') : null; })()""")
        if not link:
            failures.append("dashboard: no churn-risk link to a customer page")
        else:
            b.eval("""document.querySelector('[data-chart="churn-risk"] a[href]').click()""")
            state, ok = wait_charts(b, "customer", args.timeout)
            if not ok:
                failures.append("customer page (%s): not opened or charts not rendered: %s" % (link, state))
            else:
                print("customer page %s: %d charts rendered with data" % (state["href"], state["n"]))
            b.screenshot(os.path.join(args.out, "customer-desktop.png"), DESKTOP)
            b.viewport(PHONE)
            time.sleep(1.0)
            b.screenshot(os.path.join(args.out, "customer-phone.png"), PHONE, slice_height=1600)
        problems = b.problems(allow_401)
        for p in problems:
            failures.append("console: " + p)
        if not problems:
            print("console: no errors")
    except Exception as e:  # a broken browser is a failed check, with the reason
        failures.append("chromium: %s" % e)
    finally:
        b.close()
    print("screenshots: %s" % os.path.abspath(args.out))
    if failures:
        for f in failures:
            print("FAIL " + f, file=sys.stderr)
        return 1
    print("check-dashboard: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
