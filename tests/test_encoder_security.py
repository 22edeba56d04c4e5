"""Course content cannot steer the encoder: media by path and URL are refused unless the settings
allow them (before any file is opened or connection made), redirects and addresses are checked,
fetches have a deadline, and a request's media are bounded in bytes, decoded pixels and memory.

The default-settings checks run against the service as its own process with Python's audit hooks
(``tests.audited_service``), which records every file it opens and connection it makes; its peak
memory is read from ``/proc``. The others serve the real service in this process.
"""

from __future__ import annotations

import base64
import http.server
import io
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from encoders.service import ServiceHandle, serve_in_background
from encoders.settings import EncoderSettings
from streams.tools.photos import jpeg, photo
from streams.tools.processes import free_port, terminate

pytestmark = pytest.mark.model
MiB = 1024 * 1024


class AuditedService:
    """The encoder service as a child process with default settings, its audit log beside it."""

    def __init__(self, workdir: Path) -> None:
        self.audit = workdir / "audit.log"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {name: value for name, value in os.environ.items() if not name.startswith("COURSESTREAM_")}
        env["COURSESTREAM_ENCODER_PORT"] = str(self.port)
        with (workdir / "service.log").open("ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "tests.audited_service", str(self.audit)],
                                            env=env, stdout=log, stderr=subprocess.STDOUT)
        self.log = workdir / "service.log"

    def wait_ready(self, timeout_s: float = 180.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if httpx.get(f"{self.url}/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the audited encoder did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.1)

    def events_during(self, action: Callable[[], object]) -> tuple[object, list[str]]:
        """What ``action`` returned, and the audit lines written while it ran."""
        start = self.audit.stat().st_size
        result = action()
        with self.audit.open("rb") as audit:
            audit.seek(start)
            return result, audit.read().decode(errors="replace").splitlines()

    def memory_kib(self, field: str) -> int:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(next(line for line in status.splitlines() if line.startswith(f"{field}:")).split()[1])

    def reset_peak_memory(self) -> None:
        Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")  # VmHWM := VmRSS


@pytest.fixture(scope="module")
def audited(tmp_path_factory) -> Iterator[AuditedService]:
    service = AuditedService(tmp_path_factory.mktemp("audited"))
    try:
        service.wait_ready()
        # The hook sees what the process opens: the model weights it loaded, for one.
        assert any(line.startswith("open ") and line.endswith((".safetensors", ".pth"))
                   for line in service.audit.read_text(errors="replace").splitlines())
        yield service
    finally:
        terminate(service.process, timeout_s=30)


def embed(url: str, images: list[dict], timeout: float = 120) -> httpx.Response:
    return httpx.post(f"{url}/v1/embed", json={"items": [{"id": "c1", "title": "A course", "images": images}]},
                      timeout=timeout)


def media_message(response: httpx.Response) -> str:
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"] == ["items", 0, "images", 0]
    return error["msg"]


# ---------------------------------------------------------------------------------------------
# Default settings: refused before any read or connection


def test_paths_are_refused_by_default_before_any_file_is_opened(audited: AuditedService) -> None:
    missing = f"/etc/no-such-file-{uuid.uuid4().hex}"
    messages = {}
    for target in ("/etc/hostname", "/proc/self/environ", missing, "etc/hostname"):
        response, events = audited.events_during(lambda: embed(audited.url, [{"path": target}]))
        messages[target] = media_message(response)
        opened = [line for line in events
                  if line.startswith("open ") and any(name in line for name in ("hostname", "environ", missing))]
        assert not opened, f"{target}: {opened}"
    assert len(set(messages.values())) == 1, messages  # the same whether the file exists or not
    assert "not allowed" in messages[missing]


def test_urls_are_refused_by_default_before_any_connection(audited: AuditedService) -> None:
    listening = socket.create_server(("127.0.0.1", 0))
    closed_port = free_port()
    targets = [f"http://127.0.0.1:{listening.getsockname()[1]}/", f"http://127.0.0.1:{closed_port}/",
               "http://169.254.169.254/latest/meta-data/", "http://localhost/a.png"]
    messages = {}
    try:
        for target in targets:
            response, events = audited.events_during(lambda: embed(audited.url, [{"url": target}]))
            messages[target] = media_message(response)
            assert not [line for line in events if line.startswith("connect ")], target
        listening.setblocking(False)
        with pytest.raises(BlockingIOError):
            listening.accept()  # nothing connected to it
    finally:
        listening.close()
    assert len(set(messages.values())) == 1, messages  # the same whether something listens or not
    assert "not allowed" in messages[targets[0]]


# ---------------------------------------------------------------------------------------------
# Budgets and memory


def png(width: int, height: int) -> str:
    """Base64 of a black PNG: a few kilobytes that decode to ``width`` x ``height`` pixels."""
    buffer = io.BytesIO()
    Image.new("RGB", (width, height)).save(buffer, "PNG", optimize=True)
    return base64.b64encode(buffer.getvalue()).decode()


def test_many_small_huge_resolution_pngs_are_refused_within_the_budget_in_bounded_memory(
    audited: AuditedService,
) -> None:
    settings = EncoderSettings(_env_file=None)
    side = 4000  # 16 million pixels: under the per-image limit, a quarter of the request's budget
    assert side * side <= settings.max_image_pixels and 4 * side * side <= settings.max_request_pixels < 5 * side * side
    image = png(side, side)
    items = [{"id": f"c{n}", "title": "Huge", "images": [{"data": image}] * 16} for n in range(15)]
    body = httpx.Request("POST", "/", json={"items": items}).read()
    assert len(body) < settings.max_request_bytes
    embed(audited.url, [{"data": png(300, 200)}])  # warm: the first image pass allocates for good
    before = audited.memory_kib("VmRSS")
    audited.reset_peak_memory()

    response = httpx.post(f"{audited.url}/v1/embed", content=body, headers={"Content-Type": "application/json"},
                          timeout=300)
    peak = audited.memory_kib("VmHWM")
    assert response.status_code == 413, response.text
    assert f"budget of {settings.max_request_pixels} decoded pixels" in response.json()["detail"]
    grown_mib = (peak - before) / 1024
    unbounded_mib = 15 * 16 * side * side * 3 / MiB  # every image decoded to RGB and kept
    print(f"{len(body) / MiB:.1f} MiB of PNGs that decode to {unbounded_mib:,.0f} MiB: RSS grew {grown_mib:.0f} MiB")
    assert grown_mib < 512 and grown_mib < unbounded_mib / 20

    # One image over the per-image limit is refused from its header, before it is decoded.
    huge = media_message(embed(audited.url, [{"data": png(7000, 7000)}]))
    assert "7000x7000" in huge and "over the limit" in huge
    assert audited.process.poll() is None


# ---------------------------------------------------------------------------------------------
# Allowed sources: roots, hosts, addresses, redirects, deadlines


@pytest.fixture()
def serve(encoders) -> Iterator[Callable[[EncoderSettings], ServiceHandle]]:
    """Start the real service in this process with given settings (stopped after the test)."""
    started: list[ServiceHandle] = []

    def start(settings: EncoderSettings) -> ServiceHandle:
        started.append(serve_in_background(settings, encoders=encoders))
        started[-1].wait_ready()
        return started[-1]

    yield start
    for service in started:
        service.stop()


def test_paths_under_the_root_are_read_without_following_links(serve, tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    cat = jpeg(photo("chelsea"))
    (root / "sub" / "cat.jpg").write_bytes(cat)
    (outside / "secret.jpg").write_bytes(cat)
    (root / "link.jpg").symlink_to(outside / "secret.jpg")
    (root / "linked").symlink_to(outside)
    os.mkfifo(root / "pipe")
    service = serve(EncoderSettings(media_root=root))

    assert embed(service.url, [{"path": "sub/cat.jpg"}]).status_code == 200
    assert embed(service.url, [{"path": str(root / "sub" / "cat.jpg")}]).status_code == 200
    could_not = {target: media_message(embed(service.url, [{"path": target}]))
                 for target in ("link.jpg", "linked/secret.jpg", "pipe", "sub/missing.jpg", "sub")}
    assert set(could_not.values()) == {"could not fetch the media"}, could_not
    for target in ("../outside/secret.jpg", "sub/../../outside/secret.jpg", str(outside / "secret.jpg")):
        assert "path not allowed" in media_message(embed(service.url, [{"path": target}])), target


class MediaServer:
    """An HTTP server on ``host`` with scripted answers: ``routes`` maps a path to a callable that
    writes the response on the handler."""

    def __init__(self, host: str, routes: dict[str, Callable[[http.server.BaseHTTPRequestHandler], None]]) -> None:
        self.routes = routes
        self.active = self.most_active = 0
        self._lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                with server._lock:
                    server.active += 1
                    server.most_active = max(server.most_active, server.active)
                try:
                    server.routes[self.path](self)
                finally:
                    with server._lock:
                        server.active -= 1

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer((host, 0), Handler)
        self.port = self.httpd.server_address[1]
        self.base = f"http://{host}:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def answer(body: bytes, status: int = 200, headers: dict[str, str] | None = None,
           before: Callable[[], None] | None = None) -> Callable[[http.server.BaseHTTPRequestHandler], None]:
    def respond(handler: http.server.BaseHTTPRequestHandler) -> None:
        if before is not None:
            before()
        handler.send_response(status)
        for name, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(body)

    return respond


def redirect(location: str) -> Callable[[http.server.BaseHTTPRequestHandler], None]:
    return answer(b"", 302, {"Location": location})


def test_a_redirect_from_an_allowed_host_to_a_private_address_is_refused(serve) -> None:
    trap = socket.create_server(("127.0.0.1", 0))  # a private service the redirect points at
    trap_port = trap.getsockname()[1]
    media = MediaServer("127.0.0.2", {})  # the allowed host: an address the settings let through
    media.routes.update({
        "/cat.jpg": answer(jpeg(photo("chelsea"))),
        "/to-cat": redirect("/cat.jpg"),
        "/to-private": redirect(f"http://localhost:{trap_port}/admin"),
        "/to-private-ip": redirect(f"http://127.0.0.1:{trap_port}/admin"),
        "/to-metadata": redirect("http://169.254.169.254/latest/meta-data/"),
        "/to-unlisted": redirect(f"http://127.0.0.3:{media.port}/cat.jpg"),
        "/loop": redirect("/loop"),
    })
    service = serve(EncoderSettings(
        media_hosts=[f"127.0.0.2:{media.port}", f"localhost:{trap_port}", f"127.0.0.1:{trap_port}",
                     "169.254.169.254"],
        media_networks=["127.0.0.2/32", "169.254.0.0/16"],  # metadata stays refused even so
    ))
    try:
        assert embed(service.url, [{"url": f"{media.base}/to-cat"}]).status_code == 200
        for path, expected in [("/to-private", "not allowed"), ("/to-private-ip", "not allowed"),
                               ("/to-metadata", "not allowed"), ("/to-unlisted", "not allowed"),
                               ("/loop", "could not fetch")]:
            assert expected in media_message(embed(service.url, [{"url": f"{media.base}{path}"}])), path
        trap.setblocking(False)
        with pytest.raises(BlockingIOError):
            trap.accept()
    finally:
        trap.close()
        media.close()


def test_a_slow_drip_is_cut_at_the_fetch_deadline(serve) -> None:
    sent, hung_up = [], threading.Event()

    def drip(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", "200")
        handler.end_headers()
        try:
            for _ in range(200):  # 20 s in all: far past the 1 s deadline
                handler.wfile.write(b"x")
                handler.wfile.flush()
                sent.append(1)
                time.sleep(0.1)
        except OSError:
            hung_up.set()

    media = MediaServer("127.0.0.2", {"/slow.jpg": drip})
    service = serve(EncoderSettings(media_hosts=[f"127.0.0.2:{media.port}"], media_networks=["127.0.0.2/32"],
                                    fetch_timeout_s=1.0))
    try:
        message = media_message(embed(service.url, [{"url": f"{media.base}/slow.jpg"}]))
        assert message == "could not fetch the media"
        assert hung_up.wait(30), "the encoder kept reading the drip"
        assert len(sent) < 200
    finally:
        media.close()


def test_media_are_fetched_and_decoded_at_most_max_concurrent_media_at_once(serve) -> None:
    release = threading.Event()
    media = MediaServer("127.0.0.2", {})
    media.routes["/cat.jpg"] = answer(jpeg(photo("chelsea")), before=lambda: release.wait(0.3))
    service = serve(EncoderSettings(media_hosts=[f"127.0.0.2:{media.port}"], media_networks=["127.0.0.2/32"],
                                    max_concurrent_media=2))
    try:
        images = [{"url": f"{media.base}/cat.jpg"}] * 8
        items = [{"id": f"c{n}", "title": "Cats", "images": images} for n in range(3)]
        response = httpx.post(f"{service.url}/v1/embed", json={"items": items}, timeout=120)
        assert response.status_code == 200, response.text
        assert media.most_active == 2
    finally:
        media.close()


def test_videos_are_read_only_from_known_containers(serve) -> None:
    service = serve(EncoderSettings())
    playlist = base64.b64encode(b"#EXTM3U\n#EXTINF:1,\nfile:///etc/hostname\n").decode()
    response = httpx.post(f"{service.url}/v1/embed", json={"items": [
        {"id": "v", "title": "A video", "video": {"data": playlist}}]}, timeout=60)
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["items", 0, "video"] and "not an MP4" in error["msg"]
