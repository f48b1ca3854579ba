#!/usr/bin/env python3
"""The dashboard of `ft serve`, rendered by a headless Chromium against a real server.

    python3 tests/serve/dashboard_test.py FT_BINARY

Trains a tiny job through the API, opens the page with the token and the job in the
address's fragment, and checks the dumped DOM: the job's row, the loss and learning-rate
curves, the validation points, the artifacts and the log. Then opens it with a wrong
token and checks that the token form is shown. Exits 0 on success, 1 with a message on
failure; prints "skipped: ..." and exits 77 (skipped, for ctest) when no headless Chromium
is installed.
"""
import html.parser
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.normpath(os.path.join(HERE, "..", "..", "examples", "data", "addition"))
TOKEN = "dashboard-test-token-5f2c"
ITERATIONS = 12
EVAL_EVERY = 4


class Failure(Exception):
    pass


def check(condition, message):
    if not condition:
        raise Failure(message)


def find_browser():
    """The command line that starts a headless Chromium, or None."""
    for name in ("chromium-headless-shell", "chromium"):
        path = shutil.which(name)
        if path:
            return [path] if name == "chromium-headless-shell" else [path, "--headless"]
    return None


def http(port, method, path, token=None, body=None, timeout=30):
    """(status, headers, body bytes) of a request; error statuses are answers too."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def start_server(ft, tmp):
    """Starts `ft serve` on a free port; returns (process, port, captured output lines)."""
    env = dict(os.environ, FT_DEVICE="cpu")
    process = subprocess.Popen(
        [ft, "serve", "--port", "0", "--token-file", os.path.join(tmp, "token"),
         "--root", tmp, "--jobs-dir", os.path.join(tmp, "jobs")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True,
        start_new_session=True)
    lines, found = [], []
    ready = threading.Event()

    def read():  # keeps draining the output so that the server never blocks on it
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            match = re.search(r"http://127\.0\.0\.1:(\d+)", line)
            if match and not found:
                found.append(int(match.group(1)))
                ready.set()
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    ready.wait(30)
    if not found:
        stop_server(process)
        raise Failure("ft serve printed no http://127.0.0.1:PORT line; its output:\n" + "\n".join(lines))
    return process, found[0], lines


def stop_server(process):
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


class Dom(html.parser.HTMLParser):
    """The elements of a page as dicts: tag, attrs, text, ancestors (list of elements)."""
    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
            "source", "track", "wbr"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.elements, self.stack = [], []

    def handle_starttag(self, tag, attrs):
        element = {"tag": tag, "attrs": dict(attrs), "text": "", "ancestors": list(self.stack)}
        self.elements.append(element)
        if tag not in self.VOID:
            self.stack.append(element)

    def handle_startendtag(self, tag, attrs):
        self.elements.append({"tag": tag, "attrs": dict(attrs), "text": "",
                              "ancestors": list(self.stack)})

    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i]["tag"] == tag:
                del self.stack[i:]
                break

    def handle_data(self, data):
        for element in self.stack:
            element["text"] += data

    def by_id(self, id_):
        found = [e for e in self.elements if e["attrs"].get("id") == id_]
        check(found, f"the page has no element with id {id_!r}")
        return found[0]

    def inside(self, parent, tag=None):
        return [e for e in self.elements
                if any(a is parent for a in e["ancestors"]) and (tag is None or e["tag"] == tag)]


def hidden(element):
    def is_hidden(e):
        style = e["attrs"].get("style") or ""
        return "hidden" in e["attrs"] or re.search(r"display\s*:\s*none", style)
    return bool(is_hidden(element) or any(is_hidden(a) for a in element["ancestors"]))


def render(browser, url):
    """The DOM that the headless browser dumps after running the page's scripts."""
    command = browser + ["--no-sandbox", "--disable-gpu", "--virtual-time-budget=8000",
                         "--dump-dom", url]
    try:
        result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, timeout=60)
    except subprocess.TimeoutExpired:
        raise Failure(f"the headless browser took over 60 s: {' '.join(command)}")
    check(result.returncode == 0 and "<html" in result.stdout.lower(),
          f"the headless browser failed (exit {result.returncode}): {result.stderr[-2000:]}")
    dom = Dom()
    dom.feed(result.stdout)
    # Failures show the DOM without the page's script.
    return dom, re.sub(r"<script>.*?</script>", "<script>...</script>", result.stdout, flags=re.S)


def points(dom, id_):
    text = dom.by_id(id_)["attrs"].get("points") or ""
    pairs = []
    for item in text.split():
        x, _, y = item.partition(",")
        try:
            pairs.append((float(x), float(y)))
        except ValueError:
            raise Failure(f"#{id_}: a point that is not x,y: {item!r}")
    return pairs


def check_page(dom, job_id):
    rows = [e for e in dom.inside(dom.by_id("jobs"), "tr") if e["attrs"].get("data-job-id") == job_id]
    check(len(rows) == 1, f"#jobs has {len(rows)} rows with data-job-id={job_id}, expected 1")
    check(rows[0]["attrs"].get("data-status") == "succeeded",
          f"the job's row has data-status={rows[0]['attrs'].get('data-status')!r}, expected 'succeeded'")

    chart = dom.by_id("loss-chart")
    check(chart["tag"] == "svg", "#loss-chart is not an <svg>")
    box = [float(v) for v in (chart["attrs"].get("viewbox") or "").replace(",", " ").split()]
    check(len(box) == 4 and box[2] > 0 and box[3] > 0, f"#loss-chart has no usable viewBox: {box}")
    bx, by, bw, bh = box

    def inside_box(pairs, what):
        for x, y in pairs:
            check(math.isfinite(x) and math.isfinite(y), f"{what}: a point that is not finite: {x},{y}")
            check(bx <= x <= bx + bw and by <= y <= by + bh,
                  f"{what}: the point {x},{y} lies outside the viewBox {box}")

    train = points(dom, "train-loss")
    check(len(train) == ITERATIONS, f"#train-loss has {len(train)} points, expected {ITERATIONS}")
    inside_box(train, "#train-loss")
    xs = [x for x, _ in train]
    check(xs == sorted(xs) and len(set(xs)) == len(xs), f"#train-loss: x not increasing: {xs}")
    check(train[0][1] != train[-1][1], "#train-loss: the first and last points have the same y "
          "(the loss did not move, or the chart is flat)")

    circles = dom.inside(dom.by_id("val-loss"), "circle")
    expected = ITERATIONS // EVAL_EVERY
    check(len(circles) == expected, f"#val-loss has {len(circles)} circles, expected {expected}")
    inside_box([(float(c["attrs"]["cx"]), float(c["attrs"]["cy"])) for c in circles], "#val-loss")

    rate = points(dom, "learning-rate")
    check(len(rate) == ITERATIONS, f"#learning-rate has {len(rate)} points, expected {ITERATIONS}")
    inside_box(rate, "#learning-rate")

    labels = [e["text"].strip() for e in dom.elements
              if "axis-label" in (e["attrs"].get("class") or "").split()]
    check("1" in labels and str(ITERATIONS) in labels,
          f"the axis labels do not show the steps 1 and {ITERATIONS}: {labels}")
    numbers = [float(t) for t in labels if re.fullmatch(r"-?[0-9.]+(e-?\d+)?", t)]
    check(len(numbers) >= 4, f"the axis labels show too few numbers (steps and losses): {labels}")

    names = [e["attrs"].get("data-name", "") for e in dom.inside(dom.by_id("artifacts"), "li")]
    check(any(n.endswith(".safetensors") for n in names),
          f"#artifacts lists no .safetensors file: {names}")
    check(dom.by_id("log")["text"].strip(), "#log is empty")
    error = dom.by_id("error")["text"].strip()
    check(not error, f"#error shows a message: {error!r}")
    check(hidden(dom.by_id("token-form")), "the token form is shown although the token is right")


def run(ft, browser, tmp):
    subprocess.run([ft, "init", "--arch", "llama", "--size", "tiny", "--seed", "1",
                    "--out", os.path.join(tmp, "model")], check=True,
                   env=dict(os.environ, FT_DEVICE="cpu"), stdout=subprocess.DEVNULL)
    os.makedirs(os.path.join(tmp, "data"))
    for name, count in (("train.jsonl", 64), ("valid.jsonl", 16)):
        with open(os.path.join(DATA, name)) as f:
            lines = f.readlines()[:count]
        with open(os.path.join(tmp, "data", name), "w") as f:
            f.writelines(lines)
    with open(os.path.join(tmp, "token"), "w") as f:
        f.write(TOKEN + "\n")

    process, port, output = start_server(ft, tmp)
    try:
        status, headers, body = http(port, "GET", "/")
        check(status == 200 and b"loss-chart" in body,
              f"GET / without a token: {status}, {body[:200]!r} (expected 200 and the page)")
        check("text/html" in (headers.get("Content-Type") or ""),
              f"GET /: Content-Type {headers.get('Content-Type')!r}, expected text/html")
        status, _, body = http(port, "GET", "/api/v1/jobs")
        check(status == 401, f"GET /api/v1/jobs without a token: {status} {body[:200]!r}, expected 401")

        status, _, body = http(port, "POST", "/api/v1/jobs", TOKEN, {
            "name": "dashboard-test", "model": os.path.join(tmp, "model"),
            "data": os.path.join(tmp, "data"), "iterations": ITERATIONS, "batch-size": 2,
            "max-seq-length": 128, "lora-rank": 4, "eval-every": EVAL_EVERY})
        check(status == 201, f"POST /api/v1/jobs: {status} {body[:500]!r}, expected 201")
        job_id = json.loads(body)["id"]

        deadline, job = time.time() + 120, {}
        while time.time() < deadline:
            status, _, body = http(port, "GET", f"/api/v1/jobs/{job_id}", TOKEN)
            check(status == 200, f"GET /api/v1/jobs/{job_id}: {status} {body[:300]!r}")
            job = json.loads(body)
            if job["status"] not in ("queued", "running"):
                break
            time.sleep(0.5)
        if job.get("status") != "succeeded":
            _, _, log = http(port, "GET", f"/api/v1/jobs/{job_id}/logs", TOKEN)
            raise Failure(f"the job ended as {job.get('status')!r} (error {job.get('error')!r}), "
                          f"expected succeeded; its log:\n{log.decode(errors='replace')[-3000:]}")

        dom, text = render(browser, f"http://127.0.0.1:{port}/#token={TOKEN}&job={job_id}")
        try:
            check_page(dom, job_id)
        except Failure as e:
            raise Failure(f"{e}\n--- the dumped DOM (end) ---\n{text[-4000:]}")

        dom, text = render(browser, f"http://127.0.0.1:{port}/#token=wrong-{TOKEN}&job={job_id}")
        form = dom.by_id("token-form")
        check(form["tag"] == "form", "#token-form is not a <form>")
        check(not hidden(form), "with a wrong token the token form is not shown\n" + text[-3000:])
        check(not [e for e in dom.inside(dom.by_id("jobs"), "tr") if "data-job-id" in e["attrs"]],
              "with a wrong token the jobs table still lists jobs")
    except Failure as e:
        raise Failure(f"{e}\n--- ft serve's output ---\n" + "\n".join(output[-40:]))
    finally:
        stop_server(process)


def main():
    if len(sys.argv) != 2:
        print("usage: dashboard_test.py FT_BINARY", file=sys.stderr)
        return 2
    ft = os.path.abspath(sys.argv[1])
    browser = find_browser()
    if browser is None:
        print("skipped: no headless Chromium (chromium-headless-shell or chromium) on PATH")
        return 77  # ctest's SKIP_RETURN_CODE
    tmp = tempfile.mkdtemp(prefix="ft-dashboard-test-")
    try:
        run(ft, browser, tmp)
    except Failure as e:
        print(f"FAILED: {e}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as e:
        print(f"FAILED: {e}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("passed: the dashboard shows the job, its curves, artifacts and log; a wrong token asks again")
    return 0


if __name__ == "__main__":
    sys.exit(main())
