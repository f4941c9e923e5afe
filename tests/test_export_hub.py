"""`lsp-mlx export --push-to-hub`: the real CLI and the real huggingface_hub client, against a
fake Hub.

The Hugging Face Hub cannot be reached from where these tests run, so the one thing replaced
is the server at the other end of the HTTP connection: `FakeHub` is a local ``http.server``
on 127.0.0.1 that speaks the small part of the Hub's HTTP API that ``create_repo`` and
``upload_folder`` use (repos/create, validate-yaml, preupload, commit), and the CLI runs as a
subprocess with ``HF_ENDPOINT`` pointing at it. Everything on our side of the socket
(lsp-mlx, huggingface_hub, its HTTP client) is the real code. The fake stores the committed
files, so the tests compare them byte for byte with the local export.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from test_export_support import make_adapter_run

GOOD_TOKEN = "hf_fake_write_token"
READ_TOKEN = "hf_fake_read_token"  # valid, but may not write
FOREIGN = "someone-else"  # a namespace the good token cannot write to


class FakeHub:
    """A local stand-in for huggingface.co: records requests and committed files."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        self.repos: dict[
            str, dict[str, Any]
        ] = {}  # repo_id -> {"private": bool, "files": {path: bytes}}
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep pytest output clean
                pass

            def _reply(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if status >= 400:
                    self.send_header("X-Error-Message", body.get("error", ""))
                self.end_headers()
                self.wfile.write(data)

            def _token(self) -> str | None:
                auth = self.headers.get("Authorization", "")
                return auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                hub.requests.append(("POST", self.path))
                token = self._token()
                if token not in (GOOD_TOKEN, READ_TOKEN):
                    return self._reply(
                        401, {"error": "Invalid credentials in Authorization header"}
                    )
                path = self.path.split("?")[0]
                if path == "/api/repos/create":
                    payload = json.loads(body)
                    repo_id = f"{payload.get('organization') or 'me'}/{payload['name']}"
                    if token == READ_TOKEN or repo_id.startswith(FOREIGN + "/"):
                        return self._reply(
                            403,
                            {
                                "error": "You don't have the rights to create a model under this namespace"
                            },
                        )
                    url = f"http://{self.headers['Host']}/{repo_id}"
                    if (
                        repo_id in hub.repos
                    ):  # the Hub answers 409 with the url; exist_ok relies on it
                        return self._reply(
                            409, {"error": "You already created this model repo", "url": url}
                        )
                    hub.repos[repo_id] = {
                        "private": payload.get("visibility") == "private",
                        "files": {},
                    }
                    return self._reply(200, {"url": url})
                if path == "/api/validate-yaml":
                    return self._reply(200, {"errors": [], "warnings": []})
                parts = path.split("/")  # /api/models/NS/NAME/preupload/main
                if len(parts) >= 7 and parts[1:3] == ["api", "models"]:
                    repo_id = f"{parts[3]}/{parts[4]}"
                    if repo_id not in hub.repos:
                        return self._reply(404, {"error": "Repository not found"})
                    if token == READ_TOKEN:
                        return self._reply(
                            403, {"error": "You don't have write access to this repo"}
                        )
                    if parts[5] == "preupload":
                        files = json.loads(body)["files"]
                        modes = [
                            {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                            for f in files
                        ]
                        return self._reply(200, {"files": modes})
                    if parts[5] == "commit":
                        for line in body.decode().splitlines():
                            item = json.loads(line)
                            if item["key"] == "file":
                                value = item["value"]
                                hub.repos[repo_id]["files"][value["path"]] = base64.b64decode(
                                    value["content"]
                                )
                        url = f"http://{self.headers['Host']}/{repo_id}/commit/{'a' * 40}"
                        return self._reply(
                            200, {"commitUrl": url, "commitOid": "a" * 40, "pullRequestUrl": None}
                        )
                return self._reply(404, {"error": f"fake hub: no route for POST {path}"})

            def do_GET(self) -> None:  # noqa: N802
                hub.requests.append(("GET", self.path))
                parts = self.path.split("?")[0].split("/")
                if len(parts) == 5 and parts[1:3] == ["api", "models"]:  # repo_info
                    repo_id = f"{parts[3]}/{parts[4]}"
                    if repo_id in hub.repos:
                        return self._reply(
                            200,
                            {
                                "id": repo_id,
                                "sha": "a" * 40,
                                "private": hub.repos[repo_id]["private"],
                            },
                        )
                    return self._reply(404, {"error": "Repository not found"})
                return self._reply(404, {"error": f"fake hub: no route for GET {self.path}"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from lsp_mlx.models.tiny import make_tiny_model

    root = tmp_path_factory.mktemp("hub")
    model = make_tiny_model(root / "tiny", seed=3)
    return make_adapter_run(root / "run", model, num_layers=1, base_model=None)


def _cli(args: list[str], env_extra: dict[str, str], tmp: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    # an empty HF_HOME: no cached login from the machine running the tests leaks in
    env.update({"HF_HOME": str(tmp / "hf_home"), "HF_HUB_DISABLE_TELEMETRY": "1"}, **env_extra)
    return subprocess.run(
        [sys.executable, "-m", "lsp_mlx", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def _export_args(run_dir: Path, out: Path, *extra: str) -> list[str]:
    return [
        "export",
        str(run_dir),
        "--out",
        str(out),
        "--base-model",
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        *extra,
    ]


def test_push_uploads_every_file(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "export"
    with FakeHub() as hub:
        result = _cli(
            _export_args(run_dir, out, "--push-to-hub", "me/tiny-lsp", "--private"),
            {"HF_ENDPOINT": hub.url, "HF_TOKEN": GOOD_TOKEN},
            tmp_path,
        )
    assert result.returncode == 0, result.stderr
    assert "pushed to" in result.stdout and "me/tiny-lsp" in result.stdout
    assert hub.repos["me/tiny-lsp"]["private"] is True
    uploaded = hub.repos["me/tiny-lsp"]["files"]
    local = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert (
        set(uploaded)
        == set(local)
        >= {
            "README.md",
            "adapters.safetensors",
            "adapter_model.safetensors",
            "adapter_config.json",
            "training_curves.png",
        }
    )
    assert all(uploaded[k] == local[k] for k in local)
    # the card the Hub got names the repo in its usage snippets
    assert 'PeftModel.from_pretrained(base, "me/tiny-lsp")' in uploaded["README.md"].decode()


def _assert_export_complete(out: Path) -> None:
    for name in (
        "README.md",
        "adapters.safetensors",
        "adapter_model.safetensors",
        "adapter_config.json",
        "training_curves.png",
    ):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name


def _one_line_error(stderr: str) -> str:
    errors = [line for line in stderr.splitlines() if line.startswith("lsp-mlx: error:")]
    assert len(errors) == 1, stderr
    assert "Traceback" not in stderr, stderr
    return errors[0]


def test_push_without_token_is_one_line_exit_2(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "export"
    with FakeHub() as hub:
        result = _cli(
            _export_args(run_dir, out, "--push-to-hub", "me/tiny-lsp"),
            {"HF_ENDPOINT": hub.url},
            tmp_path,
        )
    assert result.returncode == 2
    line = _one_line_error(result.stderr)
    assert "no Hugging Face token" in line and "HF_TOKEN" in line and "hf auth login" in line
    assert hub.requests == []  # nothing was sent without a token
    _assert_export_complete(out)


def test_dry_run_lists_files_and_sends_nothing(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "export"
    with FakeHub() as hub:
        result = _cli(
            _export_args(run_dir, out, "--push-to-hub", "me/tiny-lsp", "--dry-run"),
            {"HF_ENDPOINT": hub.url, "HF_TOKEN": GOOD_TOKEN},
            tmp_path,
        )
    assert result.returncode == 0, result.stderr
    assert hub.requests == []
    assert f"to {hub.url}/me/tiny-lsp" in result.stdout
    for name in (
        "README.md",
        "adapters.safetensors",
        "adapter_model.safetensors",
        "training_curves.png",
    ):
        assert any(line.strip().startswith(name) for line in result.stdout.splitlines()), name
    _assert_export_complete(out)


# The remaining failures call push_folder in-process (one subprocess start each would cost
# seconds); the client and its HTTP stack are still the real ones, only the server is fake.
@pytest.fixture(scope="module")
def exported(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from lsp_mlx.export.exporter import export_adapter

    out = tmp_path_factory.mktemp("hub_export") / "export"
    export_adapter(run_dir, out, base_model="HuggingFaceTB/SmolLM2-135M-Instruct")
    return out


@pytest.mark.parametrize(
    ("token", "repo_id", "expected"),
    [
        ("hf_wrong", "me/tiny-lsp", ["401", "HF_TOKEN"]),
        (READ_TOKEN, "me/tiny-lsp", ["403", "no write access to me/tiny-lsp", "write permission"]),
        (GOOD_TOKEN, f"{FOREIGN}/tiny-lsp", ["403", f"no write access to {FOREIGN}/tiny-lsp"]),
    ],
)
def test_push_http_errors_name_the_fix(
    exported: Path, monkeypatch: pytest.MonkeyPatch, token: str, repo_id: str, expected: list[str]
) -> None:
    from lsp_mlx.errors import UserError
    from lsp_mlx.export.hub import push_folder

    before = {p: p.read_bytes() for p in exported.rglob("*") if p.is_file()}
    monkeypatch.setenv("HF_TOKEN", token)
    with FakeHub() as hub, pytest.raises(UserError) as err:
        push_folder(exported, repo_id, endpoint=hub.url)
    message = str(err.value)
    assert "\n" not in message
    assert all(e in message for e in expected), message
    assert f"the export in {exported} is complete" in message
    assert {p: p.read_bytes() for p in exported.rglob("*") if p.is_file()} == before


def test_push_without_network_names_the_fix(
    exported: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lsp_mlx.errors import UserError
    from lsp_mlx.export.hub import push_folder

    with socket.socket() as s:  # a port nothing listens on: connection refused, like a dead network
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_TOKEN", GOOD_TOKEN)
    with pytest.raises(UserError) as err:
        push_folder(exported, "me/tiny-lsp", endpoint=f"http://127.0.0.1:{port}")
    message = str(err.value)
    assert (
        "\n" not in message
        and "cannot reach the Hugging Face Hub" in message
        and "network" in message
    )
    assert f"the export in {exported} is complete" in message


@pytest.mark.parametrize("repo_id", ["bad..name", "a/b/c", "-x/é", ""])
def test_invalid_repo_id(exported: Path, repo_id: str) -> None:
    from lsp_mlx.errors import UserError
    from lsp_mlx.export.hub import plan_upload, push_folder

    for call in (push_folder, plan_upload):
        with pytest.raises(UserError, match="not a valid Hub repo id.*NAMESPACE/NAME"):
            call(exported, repo_id)


def test_existing_repo_is_reused(exported: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lsp_mlx.export.hub import push_folder

    monkeypatch.setenv("HF_TOKEN", GOOD_TOKEN)
    with FakeHub() as hub:
        push_folder(exported, "me/again", endpoint=hub.url)
        hub.repos["me/again"]["files"].clear()
        url = push_folder(
            exported, "me/again", endpoint=hub.url
        )  # create_repo answers 409: exist_ok
    assert url.endswith("/me/again")
    assert "README.md" in hub.repos["me/again"]["files"]
