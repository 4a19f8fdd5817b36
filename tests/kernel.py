"""Run code in a kernel of a running Jupyter server, over its REST + websocket API (as JupyterLab does)."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime, timezone

import httpx
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect


def _message(code: str, session: str) -> dict:
    return {
        "header": {
            "msg_id": uuid.uuid4().hex,
            "msg_type": "execute_request",
            "username": "test",
            "session": session,
            "date": datetime.now(timezone.utc).isoformat(),
            "version": "5.3",
        },
        "parent_header": {},
        "metadata": {},
        "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {}, "allow_stdin": False},
        "channel": "shell",
    }


async def run_cell(
    server_url: str, token: str, code: str, timeout: float = 120, kernel_name: str = "", results: bool = False
) -> str:
    """Start a kernel (``kernel_name``, default the server's), run ``code``, return its stdout (and with
    ``results`` the text of its results; raises on an error reply), shut the kernel down."""
    base = server_url.rstrip("/")
    headers = {"Authorization": f"token {token}"}
    async with httpx.AsyncClient(timeout=60, headers=headers) as client:
        body = {"name": kernel_name} if kernel_name else {}
        kernel = (await client.post(f"{base}/api/kernels", json=body)).raise_for_status().json()
        try:
            ws_url = base.replace("http", "ws", 1) + f"/api/kernels/{kernel['id']}/channels"
            # a header, not ?token=: jupyterhub-singleuser takes URL tokens on websockets only from browsers
            # generous: the server answers the websocket only once the kernel is up (a JVM kernel on busy cores)
            request = HTTPRequest(ws_url, headers=headers, connect_timeout=timeout, request_timeout=timeout)
            return await asyncio.wait_for(_execute(request, code, results), timeout)
        finally:
            await client.delete(f"{base}/api/kernels/{kernel['id']}")


async def _execute(request: HTTPRequest, code: str, results: bool = False) -> str:
    conn = await websocket_connect(request)
    try:
        request = _message(code, uuid.uuid4().hex)
        conn.write_message(json.dumps(request))
        output: list[str] = []
        while True:
            raw = await conn.read_message()
            if raw is None:
                raise RuntimeError("kernel websocket closed")
            msg = json.loads(raw)
            if msg.get("parent_header", {}).get("msg_id") != request["header"]["msg_id"]:
                continue
            kind = msg["msg_type"]
            if kind == "stream":
                output.append(msg["content"]["text"])
            elif results and kind in ("execute_result", "display_data") and "text/plain" in msg["content"].get("data", {}):
                output.append(msg["content"]["data"]["text/plain"] + "\n")
            elif kind == "error":
                raise RuntimeError(f"{msg['content']['ename']}: {msg['content']['evalue']}")
            elif kind == "status" and msg["content"]["execution_state"] == "idle":
                return "".join(output)
    finally:
        conn.close()
