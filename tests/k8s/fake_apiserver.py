"""A protocol-faithful stand-in for the Kubernetes API server (none exists on this machine).

It speaks what podtrail's real `kubernetes` client uses: pod list with
``fieldSelector=spec.nodeName=...`` and a ``resourceVersion``; pod watch (``watch=1``) as a
chunked stream of JSON lines (ADDED/MODIFIED/DELETED/BOOKMARK), a 410 Expired ERROR event for
a compacted resourceVersion, ``timeoutSeconds``, and mid-stream disconnects on demand;
``GET`` of replicasets and jobs; and 503 for every request while "down".
"""

from __future__ import annotations

import copy
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse


def make_pod(name: str, ns: str, uid: str, node: str, *, container_id: str = "", container: str = "app",
             image: str = "registry.example/app:1.0", owner: tuple[str, str] | None = None,
             labels: dict[str, str] | None = None, ip: str = "10.1.0.5", privileged: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": ns, "uid": uid, "labels": labels or {}}
    if owner:
        meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": owner[0], "name": owner[1], "uid": "o-" + uid, "controller": True}]
    statuses = []
    if container_id:
        statuses.append({"name": container, "containerID": f"containerd://{container_id}", "image": image,
                         "imageID": "registry.example/app@sha256:" + "ab" * 32, "ready": True, "restartCount": 0})
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": meta,
        "spec": {"nodeName": node, "serviceAccountName": "app-sa", "containers": [
            {"name": container, "image": image, "securityContext": {"privileged": privileged}}]},
        "status": {"podIP": ip, "podIPs": [{"ip": ip}], "containerStatuses": statuses},
    }


class FakeAPIServer:
    def __init__(self) -> None:
        self.pods: dict[str, dict[str, Any]] = {}
        self.services: dict[str, dict[str, Any]] = {}
        self.owners: dict[tuple[str, str, str], dict[str, Any]] = {}  # (kind, ns, name) -> object
        self.rv = 100
        self.log: list[tuple[int, str, dict[str, Any]]] = []
        self.svc_log: list[tuple[int, str, dict[str, Any]]] = []
        self.compacted_below = 0
        self.down = False
        self.denied: set[tuple[str, str]] = set()  # (resource, verb) RBAC says no to
        self.requests: list[str] = []
        self._cv = threading.Condition()
        self._disconnect = 0
        srv = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                srv.requests.append(self.path)
                if srv.down:
                    return self._json(503, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 503, "reason": "ServiceUnavailable"})
                u = urlparse(self.path)
                q = {k: v[0] for k, v in parse_qs(u.query).items()}
                parts = u.path.strip("/").split("/")
                if u.path in ("/api/v1/pods", "/api/v1/services"):
                    res = u.path.rsplit("/", 1)[1]
                    return self._watch(q, res) if q.get("watch") in ("1", "true") else self._list(q, res)
                if len(parts) == 7 and parts[:2] in (["apis", "apps"], ["apis", "batch"]) and parts[3] == "namespaces":
                    kind = {"replicasets": "ReplicaSet", "jobs": "Job"}.get(parts[5], "")
                    obj = srv.owners.get((kind, parts[4], parts[6]))
                    if obj is None:
                        return self._json(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404, "reason": "NotFound"})
                    return self._json(200, obj)
                self._json(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404})

            def do_POST(self) -> None:  # noqa: N802 - SelfSubjectAccessReview, as `kubectl auth can-i`
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                if self.path.startswith("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"):
                    ra = body.get("spec", {}).get("resourceAttributes", {})
                    body["status"] = {"allowed": (ra.get("resource"), ra.get("verb")) not in srv.denied}
                    return self._json(201, body)
                self._json(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404})

            def _json(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _list(self, q: dict[str, str], res: str) -> None:
                objs = srv.pods if res == "pods" else srv.services
                with srv._cv:
                    items = [copy.deepcopy(p) for p in objs.values() if srv._selected(p, q)]
                    rv = srv.rv
                self._json(200, {"kind": "PodList" if res == "pods" else "ServiceList", "apiVersion": "v1", "metadata": {"resourceVersion": str(rv)}, "items": items})

            def _chunk(self, obj: dict[str, Any]) -> None:
                data = json.dumps(obj).encode() + b"\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()

            def _watch(self, q: dict[str, str], res: str) -> None:
                log = srv.log if res == "pods" else srv.svc_log
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                since = int(q.get("resourceVersion") or 0)
                deadline = time.monotonic() + float(q.get("timeoutSeconds") or 300)
                bookmarks = q.get("allowWatchBookmarks") in ("true", "1")
                gen = srv._disconnect
                try:
                    if since and since < srv.compacted_below:
                        self._chunk({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                                                "message": "too old resource version", "reason": "Expired", "code": 410}})
                        return
                    last_bookmark = time.monotonic()
                    while time.monotonic() < deadline and gen == srv._disconnect:
                        with srv._cv:
                            pending = [(rv, t, o) for rv, t, o in log if rv > since and srv._selected(o, q)]
                            if not pending:
                                srv._cv.wait(0.1)
                        for rv, t, o in pending:
                            self._chunk({"type": t, "object": o})
                            since = rv
                        if bookmarks and time.monotonic() - last_bookmark > 0.5:
                            self._chunk({"type": "BOOKMARK", "object": {"kind": "Pod", "apiVersion": "v1",
                                                                        "metadata": {"resourceVersion": str(srv.rv)}}})
                            last_bookmark = time.monotonic()
                    self.wfile.write(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    pass
                self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._t = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._t.start()

    @staticmethod
    def _selected(pod: dict[str, Any], q: dict[str, str]) -> bool:
        sel = q.get("fieldSelector", "")
        if sel.startswith("spec.nodeName="):
            return pod.get("spec", {}).get("nodeName") == sel.split("=", 1)[1]
        return True

    def _record(self, typ: str, pod: dict[str, Any], log: list[tuple[int, str, dict[str, Any]]] | None = None) -> None:
        with self._cv:
            self.rv += 1
            pod = copy.deepcopy(pod)
            pod["metadata"]["resourceVersion"] = str(self.rv)
            (self.log if log is None else log).append((self.rv, typ, pod))
            self._cv.notify_all()

    def add_service(self, name: str, ns: str, cluster_ip: str) -> None:
        svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns, "uid": f"svc-{ns}-{name}"},
               "spec": {"clusterIP": cluster_ip, "clusterIPs": [cluster_ip], "ports": [{"port": 80, "protocol": "TCP"}]}}
        key = f"{ns}/{name}"
        typ = "MODIFIED" if key in self.services else "ADDED"
        self.services[key] = svc
        self._record(typ, svc, self.svc_log)

    def add_pod(self, pod: dict[str, Any]) -> None:
        uid = pod["metadata"]["uid"]
        typ = "MODIFIED" if uid in self.pods else "ADDED"
        self.pods[uid] = pod
        self._record(typ, pod)

    def delete_pod(self, uid: str) -> None:
        pod = self.pods.pop(uid)
        self._record("DELETED", pod)

    def add_owner(self, kind: str, ns: str, name: str, owner: tuple[str, str]) -> None:
        api = "apps/v1" if kind == "ReplicaSet" else "batch/v1"
        tmpl = {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "i"}], "restartPolicy": "Never"}}
        spec: dict[str, Any] = {"template": tmpl}
        if kind == "ReplicaSet":
            spec["selector"] = {"matchLabels": {"app": name}}
        self.owners[(kind, ns, name)] = {"apiVersion": api, "kind": kind, "spec": spec, "metadata": {
            "name": name, "namespace": ns, "ownerReferences": [{"apiVersion": "apps/v1", "kind": owner[0], "name": owner[1], "uid": "x", "controller": True}]}}

    def compact(self) -> None:
        """Forget history: watches from older resourceVersions get 410 Gone."""
        with self._cv:
            self.compacted_below = self.rv
            self.log.clear()
            self.svc_log.clear()

    def disconnect_watches(self) -> None:
        self._disconnect += 1

    def kubeconfig(self, path: str) -> str:
        with open(path, "w") as f:
            f.write(f"""apiVersion: v1
kind: Config
clusters: [{{name: fake, cluster: {{server: "http://127.0.0.1:{self.port}"}}}}]
users: [{{name: u, user: {{token: t}}}}]
contexts: [{{name: c, context: {{cluster: fake, user: u}}}}]
current-context: c
""")
        return path

    def close(self) -> None:
        self.httpd.shutdown()
