"""A loopback server on 127.0.0.1 that speaks the Files and Batches endpoints of an OpenAI-compatible API.

``POST /v1/files`` (multipart upload), ``POST /v1/batches``, ``GET /v1/batches/{id}``, ``GET /v1/files/{id}/content``.
A batch stays ``in_progress`` while ``hold`` is set; once released, the next poll answers every request of its input
file with ``answer(body)`` (a chat-completion request body -> the completion's text) and the batch is ``completed``.
Uploads and batch creations are counted, so a test can tell a resumed batch from a second submission.
"""

from __future__ import annotations

import email.parser
import itertools
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.judges.loopback import completion


class BatchLoopback:
    def __init__(self, answer: Callable[[dict], str], hold: bool = False):
        self.answer, self.hold = answer, hold
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict] = {}
        self.uploads = self.creates = self.polls = 0
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> BatchLoopback:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet: nothing of a request reaches stderr
                pass

            def do_GET(self):
                owner._handle(self, "GET")

            def do_POST(self):
                owner._handle(self, "POST")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        raw = h.rfile.read(int(h.headers.get("content-length") or 0))
        path = h.path.split("?")[0]
        with self._lock:
            status, body = self._route(method, path, h.headers.get("content-type", ""), raw)
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        h.send_response(status)
        h.send_header("content-type", "application/octet-stream" if isinstance(body, bytes) else "application/json")
        h.send_header("content-length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _route(self, method: str, path: str, content_type: str, raw: bytes):
        parts = path.strip("/").split("/")  # v1, files|batches, ...
        if method == "POST" and parts[1:] == ["files"]:
            self.uploads += 1
            return 200, self._file(_multipart_file(content_type, raw), "batch")
        if method == "POST" and parts[1:] == ["batches"]:
            self.creates += 1
            req = json.loads(raw)
            batch_id = f"batch_{next(self._ids)}"
            self.batches[batch_id] = {"id": batch_id, "object": "batch", "endpoint": req["endpoint"],
                                      "input_file_id": req["input_file_id"], "completion_window": "24h",
                                      "status": "in_progress", "created_at": int(time.time()),
                                      "output_file_id": None, "error_file_id": None}
            return 200, self.batches[batch_id]
        if method == "GET" and len(parts) == 3 and parts[1] == "batches" and parts[2] in self.batches:
            self.polls += 1
            batch = self.batches[parts[2]]
            if batch["status"] == "in_progress" and not self.hold:
                batch["output_file_id"] = self._file(self._run(batch["input_file_id"]), "batch_output")["id"]
                batch["status"] = "completed"
            return 200, batch
        if method == "GET" and len(parts) == 4 and parts[1] == "files" and parts[3] == "content":
            return 200, self.files[parts[2]]
        return 404, {"error": {"message": f"no route {method} {path}"}}

    def _file(self, content: bytes, purpose: str) -> dict:
        file_id = f"file_{next(self._ids)}"
        self.files[file_id] = content
        return {"id": file_id, "object": "file", "bytes": len(content), "created_at": int(time.time()),
                "filename": "input.jsonl", "purpose": purpose, "status": "processed"}

    def _run(self, input_file_id: str) -> bytes:
        out = []
        for line in self.files[input_file_id].decode().splitlines():
            req = json.loads(line)
            body = completion(self.answer(req["body"])).body
            out.append(json.dumps({"id": f"resp_{req['custom_id']}", "custom_id": req["custom_id"],
                                   "response": {"status_code": 200, "body": body}, "error": None}))
        return ("\n".join(out) + "\n").encode()


def _multipart_file(content_type: str, raw: bytes) -> bytes:
    message = email.parser.BytesParser().parsebytes(f"content-type: {content_type}\r\n\r\n".encode() + raw)
    for part in message.get_payload():
        if part.get_param("name", header="content-disposition") == "file":
            return part.get_payload(decode=True)
    raise ValueError("the upload has no file part")
