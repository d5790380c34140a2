"""The App's HTTP server: images only by item id, the write token, --read-only, input validation."""
from __future__ import annotations

import http.client
import json
import os
from pathlib import Path

import pytest
from PIL import Image

import engine
from engine.app.server import App


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("app_srv")
    imgs = tmp / "images"
    imgs.mkdir()
    Image.new("RGB", (40, 30), (200, 10, 10)).save(imgs / "a.png")
    secret = tmp / "secret.png"  # outside the images folder
    Image.new("RGB", (40, 30), (0, 0, 0)).save(secret)
    os.symlink(secret, imgs / "link.png")
    (tmp / "passwd.png").write_text("root:x:0:0")
    ws = engine.connect(str(tmp / "w.duckdb"))
    ds = ws.create_dataset("d")
    ds.append([engine.DatasetItem(str(imgs / "a.png"), "a", width=40, height=30, metadata={"camera": "<script>x</script>"}),
               engine.DatasetItem(str(imgs / "link.png"), "link", width=40, height=30),
               engine.DatasetItem(str(imgs / "../passwd.png"), "dots", width=40, height=30)], check_images=False)
    ds.annotate([engine.BoxAnnotation("car", "a", x=1, y=1, width=10, height=10, annotation_id="g1")])
    app = App(ws, port=0).start()
    ro = App(ws, port=0, read_only=True).start()
    yield app, ro, ds
    app.stop()
    ro.stop()
    ws.close()


def req(app, method, path, body=None, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", app.port, timeout=30)
    h = {"Host": f"127.0.0.1:{app.port}", **(headers or {})}
    data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
    c.request(method, path, body=data, headers=h)
    r = c.getresponse()
    out = r.status, r.read(), dict(r.getheaders())
    c.close()
    return out


def post(app, name, body, token=True, ctype="application/json"):
    h = {"Content-Type": ctype}
    if token:
        h["X-Loupe-Token"] = app.token if token is True else token
    return req(app, "POST", f"/api/{name}", body, h)


def test_images_by_item_id_only(served):
    app, _, _ = served
    assert req(app, "GET", "/img/d/a")[0] == 200
    assert req(app, "GET", "/thumb/d/a")[0] == 200
    for bad in ["/img/d/../../etc/passwd", "/img/d/..%2F..%2Fetc%2Fpasswd", "/img/d/%2Fetc%2Fpasswd",
                "/img/d/%252e%252e%252fpasswd", "/img/../d/a", "/img/d//etc/passwd", "/img/d/link",
                "/thumb/d/link", "/img/d/dots", "/img/nodataset/a", "/img/d", "/static/../engine/app/server.py",
                "/static/%2e%2e/server.py", "/static/index.html/../../api.py", "/etc/passwd"]:
        status, body, _ = req(app, "GET", bad)
        assert status == 404, bad
        assert b"root:" not in body


def test_writes_need_the_token(served):
    app, _, ds = served
    body = {"dataset": "d", "action": "delete", "ref": "a", "annotation_id": "g1"}
    assert post(app, "fix", body, token=False)[0] == 403
    assert post(app, "fix", body, token="wrong")[0] == 403
    assert post(app, "fix", body, ctype="text/plain")[0] == 415  # a form post cannot forge JSON
    assert req(app, "GET", "/api/fix?dataset=d&action=delete&ref=a&annotation_id=g1")[0] == 405
    assert ds.annotations().num_rows == 1
    status, _, headers = post(app, "fix", body)
    assert status == 200 and ds.annotations().num_rows == 0
    assert "Access-Control-Allow-Origin" not in headers
    assert post(app, "undo", {"dataset": "d"})[0] == 200 and ds.annotations().num_rows == 1


def test_read_only_refuses_writes(served):
    _, ro, ds = served
    status, body, _ = post(ro, "fix", {"dataset": "d", "action": "delete", "ref": "a", "annotation_id": "g1"})
    assert status == 403 and b"read-only" in body
    assert post(ro, "save_slice", {"dataset": "d", "name": "s", "q": "width > 0"})[0] == 403
    assert ds.annotations().num_rows == 1 and ds.slices().num_rows == 0


def test_input_validation(served):
    app, _, _ = served
    for path, word in [("/api/items?dataset=d&limit=abc", b"integer"), ("/api/items?dataset=d&limit=100000", b"between"),
                       ("/api/items", b"missing parameter 'dataset'"), ("/api/items?dataset=nope", b"no dataset"),
                       ("/api/nothing", b"no API endpoint"), ("/api/item?dataset=d&ref=zzz", b"no item")]:
        status, body, _ = req(app, "GET", path)
        assert status in (400, 404) and word in body, (path, body)
    status, body, _ = req(app, "GET", "/api/items?dataset=d&q=widht%20%3E%201")
    err = json.loads(body)
    assert status == 400 and err["kind"] == "name error" and err["column"] == 1 and err["suggestions"]
    for body in [b"{not json", b"[1]"]:
        assert post(app, "fix", body)[0] == 400
    assert post(app, "fix", {"dataset": "d", "action": "add", "ref": "a", "label": "car", "x": "nan", "y": 1,
                             "width": 1, "height": 1})[0] == 400
    assert post(app, "fix", {"dataset": "d", "action": "explode", "ref": "a"})[0] == 400
    assert post(app, "save_slice", {"dataset": "d", "name": "<b>", "q": "width > 0"})[0] == 400


def test_host_header_and_headers(served):
    app, _, _ = served
    assert req(app, "GET", "/api/info", headers={"Host": "evil.example:80"})[0] == 421
    status, body, headers = req(app, "GET", "/")
    assert status == 200 and app.token.encode() in body
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    # the JSON API returns the raw text; the page renders it with textContent
    status, body, _ = req(app, "GET", "/api/item?dataset=d&ref=a")
    assert json.loads(body)["item"]["metadata"]["camera"] == "<script>x</script>"
    assert b"image_location" not in body


def test_concurrent_reads(served):
    from concurrent.futures import ThreadPoolExecutor

    app, _, _ = served
    with ThreadPoolExecutor(8) as ex:
        got = list(ex.map(lambda i: req(app, "GET", f"/api/items?dataset=d&q=width%20%3E%20{i % 5}")[0], range(40)))
    assert got == [200] * 40
