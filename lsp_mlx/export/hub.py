"""Upload an export folder to the Hugging Face Hub with ``huggingface_hub``.

``HfApi.create_repo(exist_ok=True)`` then ``HfApi.upload_folder``; the token comes from
``HF_TOKEN`` or the cached login (``hf auth login``), as everywhere in huggingface_hub.
Every way this can fail for a user (no token, bad token, no write access, no network, a
malformed repo id) becomes one `UserError` line that names the fix. The local export is
written before any of this runs, so it is complete whatever the Hub says.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lsp_mlx.errors import UserError

_LOGIN_FIX = "run `hf auth login` (or `huggingface-cli login`) or set HF_TOKEN to a write token"
_NETWORK_CLASSES = {
    "TransportError",
    "RequestError",
    "ConnectError",
    "ConnectionError",
    "Timeout",
    "TimeoutException",
}


@dataclass
class UploadPlan:
    repo_id: str
    url: str
    files: list[tuple[str, int]]  # (path in repo, bytes)
    private: bool
    has_token: bool

    @property
    def total_bytes(self) -> int:
        return sum(size for _, size in self.files)

    def describe(self) -> str:
        lines = [
            f"would upload {len(self.files)} files ({_size(self.total_bytes)}) to {self.url}"
            f"{' (private)' if self.private else ''}:"
        ]
        lines += [f"  {path:<48} {_size(size):>10}" for path, size in self.files]
        if not self.has_token:
            lines.append(f"no Hugging Face token found: before pushing, {_LOGIN_FIX}")
        return "\n".join(lines)


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


def check_repo_id(repo_id: str, folder: Path | None = None) -> None:
    """Reject what the Hub would reject, before any network call."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        reason = str(e).splitlines()[0].rstrip(".")
        raise UserError(
            f"{repo_id!r} is not a valid Hub repo id ({reason}): use NAME or NAMESPACE/NAME with letters, "
            "digits, '-', '_' and '.'" + (f"; the export in {folder} is complete" if folder else "")
        ) from None


def _endpoint(endpoint: str | None = None) -> str:
    from huggingface_hub import constants

    return (endpoint or constants.ENDPOINT).rstrip("/")


def plan_upload(folder: Path, repo_id: str, private: bool = False) -> UploadPlan:
    """What ``push_folder`` would send (for ``--dry-run``): no network."""
    from huggingface_hub import get_token

    check_repo_id(repo_id, folder)
    files = sorted(
        (p.relative_to(folder).as_posix(), p.stat().st_size)
        for p in folder.rglob("*")
        if p.is_file()
    )
    return UploadPlan(
        repo_id=repo_id,
        url=f"{_endpoint()}/{repo_id}",
        files=files,
        private=private,
        has_token=get_token() is not None,
    )


def _is_network_error(e: BaseException) -> bool:
    if isinstance(e, (ConnectionError, TimeoutError)):
        return True
    return any(cls.__name__ in _NETWORK_CLASSES for cls in type(e).__mro__)


def _http_error(e: Exception, repo_id: str, folder: Path) -> UserError:
    status = getattr(getattr(e, "response", None), "status_code", None)
    later = f"the export in {folder} is complete; push it again when fixed"
    if status == 401:
        return UserError(f"the Hub rejected the token (401 Unauthorized): {_LOGIN_FIX}; {later}")
    if status == 403:
        return UserError(
            f"no write access to {repo_id} (403 Forbidden): use a token with write permission, or a repo under "
            f"your own name or an organization you can write to; {later}"
        )
    if status == 404:
        return UserError(
            f"the Hub has no repo or namespace for {repo_id} (404): check the NAMESPACE part; {later}"
        )
    first = str(e).splitlines()[0] if str(e) else type(e).__name__
    return UserError(
        f"the Hub refused the upload to {repo_id} ({first}): fix that and push again; {later}"
    )


def push_folder(
    folder: Path,
    repo_id: str,
    private: bool = False,
    endpoint: str | None = None,
    commit_message: str | None = None,
) -> str:
    """Create ``repo_id`` if needed and upload ``folder``; returns the repo URL.

    ``endpoint`` defaults to huggingface_hub's (``HF_ENDPOINT`` or https://huggingface.co).
    """
    from huggingface_hub import HfApi, get_token
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    check_repo_id(repo_id, folder)
    token = get_token()
    if token is None:
        raise UserError(
            f"no Hugging Face token found: {_LOGIN_FIX}; the export in {folder} is complete"
        )
    api = HfApi(endpoint=endpoint, token=token)
    try:
        # private=None keeps the namespace's default visibility (some organizations default to private)
        url = api.create_repo(
            repo_id, repo_type="model", private=True if private else None, exist_ok=True
        )
        api.upload_folder(
            folder_path=str(folder),
            repo_id=url.repo_id,
            repo_type="model",
            commit_message=commit_message or "Upload LoRA adapter exported by lsp-mlx",
        )
    except OfflineModeIsEnabled:
        raise UserError(
            f"HF_HUB_OFFLINE is set: unset it to push; the export in {folder} is complete"
        ) from None
    except HfHubHTTPError as e:
        raise _http_error(e, repo_id, folder) from None
    except Exception as e:
        if not _is_network_error(e):
            raise
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(
            f"cannot reach the Hugging Face Hub at {_endpoint(endpoint)} ({first}): check the network or proxy "
            f"(or HF_ENDPOINT); the export in {folder} is complete, push it later"
        ) from None
    return str(url)
