"""``CloudApiClient``: every PROTOCOL.md route, with Arkor's policy over one ``httpx.Client``.

The policy lives here and nowhere else: the bearer token (never on the two bootstrap
routes), the ``X-Arkor-Client`` header, jittered retries of requests that are safe to
repeat, one error class per status, and the deprecation notice the CLI prints.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError

from arkor._fs import atomic_write_chunks, sha256_bytes
from arkor._version import __version__
from arkor.cloud._api_models import (
    AnonymousToken,
    AnonymousTokenRequest,
    ArtifactList,
    CliConfig,
    DataInspection,
    DataInspectRequest,
    EvalLine,
    EvalProgress,
    EvalRequest,
    EvalResult,
    InferenceRequest,
    InvitationCreate,
    InvitationEnvelope,
    JobEnvelope,
    JobList,
    Me,
    OrgInvitation,
    OrgMembers,
    Project,
    ProjectCreate,
    ProjectEnvelope,
    ProjectList,
    TokenList,
    TrainingJob,
    UpgradeRequired,
    Upload,
    UploadEnvelope,
)
from arkor.cloud._credentials import Credentials, OAuthCredentials, normalize_url, plane_url
from arkor.cloud._deployments import (
    CreateDeploymentInput,
    CreateDeploymentKeyInput,
    CreateDeploymentKeyResult,
    DeploymentDto,
    DeploymentEnvelope,
    DeploymentKeyDto,
    DeploymentKeyList,
    DeploymentList,
    DeploymentRun,
    DeploymentRunList,
    DeploymentScope,
    UpdateDeploymentInput,
)
from arkor.cloud._errors import (
    CloudApiError,
    NotFoundError,
    PlaneUnreachableError,
    error_for_status,
)
from arkor.cloud._models import Artifact, EvalCompleted, JobCreate
from arkor.cloud._sse import backoff_delay
from arkor.cloud._state import ProjectScope

CLIENT_HEADER = "X-Arkor-Client"
CLIENT_ID = f"arkor-python/{__version__}"
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
_INFERENCE_TIMEOUT = 600.0
"""Seconds to wait for an answer (or its next chunk): the first one may load a model."""
_EVAL_TIMEOUT = 1800.0
"""Seconds to wait for an eval's next line: one batch of long answers on a CPU is slow."""
_EVAL_LINE = TypeAdapter[EvalLine](EvalLine)
_RETRIED_STATUSES = frozenset({502, 503, 504})
_WARNING_TEXT = re.compile(r'^\s*\d{3}\s+\S+\s+"((?:[^"\\]|\\.)*)"')

_Model = TypeVar("_Model", bound=BaseModel)

_deprecation: str | None = None


def deprecation_notice() -> str | None:
    """The latest ``Deprecation: true`` notice any plane sent this process, or None."""
    return _deprecation


def clear_deprecation_notice() -> None:
    """Forget the recorded notice (the CLI does, once it has printed it)."""
    global _deprecation
    _deprecation = None


def _record_deprecation(base_url: str, response: httpx.Response) -> None:
    """Remember a deprecation notice; ``Warning`` and ``Sunset`` only shape its text."""
    global _deprecation
    if response.headers.get("Deprecation", "").strip().lower() in ("", "false"):
        return
    match = _WARNING_TEXT.match(response.headers.get("Warning", ""))
    text = match.group(1) if match else f"arkor {__version__} is deprecated by this plane"
    notice = f"{base_url}: {text.rstrip('.')}."
    if sunset := response.headers.get("Sunset", "").strip():
        notice += f" Support ends {sunset}."
    if "pip install" not in text:
        notice += " Upgrade with `pip install -U arkor`."
    _deprecation = notice


@dataclass(frozen=True)
class CloudApiClientOptions:
    """What a :class:`CloudApiClient` is built from, as one value (``CloudApiClient.from_options``)."""

    base_url: str
    token: str | None = None
    timeout: float | httpx.Timeout | None = None
    """Seconds, or an ``httpx.Timeout``; None: the client's default."""
    retries: int = 2
    retry_delay: float = 0.25


class CloudApiClient:
    """A typed client for an Arkor control plane (PROTOCOL.md), local or hosted.

    Bring an ``httpx.Client`` to share a connection pool or a transport (it is yours to
    close, and its timeouts apply), or let the client build one with ``timeout``. Requests that are safe to repeat (reads, uploads,
    job submissions with an idempotency key) are retried ``retries`` times on connection
    errors and 502/503/504, with jittered backoff. Non-2xx answers raise
    :class:`~arkor.cloud.CloudApiError` subclasses.

    Example::

        from arkor.cloud import CloudApiClient, ensure_credentials, ensure_project

        credentials = ensure_credentials()
        with CloudApiClient.from_credentials(credentials) as client:
            state = ensure_project(client, credentials)
            for job in client.list_jobs(state):
                print(job.name, job.status)
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        http: httpx.Client | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retries: int = 2,
        retry_delay: float = 0.25,
    ) -> None:
        self.base_url = normalize_url(base_url)
        self.token = token
        self._owns_http = http is None
        self._http = http if http is not None else httpx.Client(timeout=timeout)
        self._retries = retries
        self._retry_delay = retry_delay

    @classmethod
    def from_options(
        cls, options: CloudApiClientOptions, *, http: httpx.Client | None = None
    ) -> Self:
        """A client built from ``options`` (the TypeScript SDK's ``CloudApiClientOptions``)."""
        return cls(
            options.base_url,
            options.token,
            http=http,
            timeout=options.timeout if options.timeout is not None else DEFAULT_TIMEOUT,
            retries=options.retries,
            retry_delay=options.retry_delay,
        )

    @classmethod
    def from_credentials(
        cls,
        credentials: Credentials,
        *,
        via: str | None = None,
        http: httpx.Client | None = None,
    ) -> CloudApiClient:
        """A client for the plane that issued ``credentials``, carrying their token.

        ``via`` reaches that same plane at another address (an embedded plane on an
        ephemeral port). The address is trusted as given: credentials from
        :func:`~arkor.cloud.ensure_credentials` were just matched to the plane id found
        there, which is how a token is kept from any other plane. An OAuth sign-in (with
        no ``http`` of the caller's) is renewed near expiry and after a 401, as the CLI's is.
        """
        if isinstance(credentials, OAuthCredentials) and http is None:
            from arkor.cloud._oauth import authorized_client

            return authorized_client(credentials, via=via)
        return cls(via or plane_url(credentials), credentials.bearer_token, http=http)

    def close(self) -> None:
        """Close the connection pool, if this client built it."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- auth and identity ------------------------------------------------------------

    def cli_config(self) -> CliConfig:
        """Which sign-in methods the plane offers (no token sent)."""
        return _parse(CliConfig, self._call("GET", "/v1/auth/cli/config", auth=False))

    def anonymous_token(
        self, kind: Literal["cli"] = "cli", *, home_key: str | None = None
    ) -> AnonymousToken:
        """Mint an anonymous identity with a personal org (not retried).

        With ``home_key`` (this plane's, from its home) the answer is a new token for the
        identity that owns the home; the client's own token, if it has one, goes along so
        that identity becomes the owner when the plane has none. Otherwise no token is sent.
        """
        body = AnonymousTokenRequest(kind=kind, home_key=home_key).to_wire()
        response = self._call(
            "POST", "/v1/auth/anonymous", json=body, auth=home_key is not None, retry=False
        )
        return _parse(AnonymousToken, response)

    def list_tokens(self) -> TokenList:
        """The caller's tokens (ids and dates; the plane keeps only their hashes)."""
        return _parse(TokenList, self._call("GET", "/v1/auth/tokens"))

    def revoke_token(self, token_id: str) -> None:
        """Revoke one of the caller's tokens; :class:`~arkor.cloud.NotFoundError` if unknown."""
        self._call("DELETE", f"/v1/auth/tokens/{quote(token_id, safe='')}", retry=False)

    def me(self) -> Me:
        """The caller's identity and the orgs it can reach."""
        return _parse(Me, self._call("GET", "/v1/me"))

    # --- projects ---------------------------------------------------------------------

    def list_projects(self, org_slug: str) -> ProjectList:
        """The org's projects."""
        return _parse(ProjectList, self._call("GET", "/v1/projects", params={"orgSlug": org_slug}))

    def create_project(self, org_slug: str, *, name: str, slug: str) -> Project:
        """Create a project; :class:`~arkor.cloud.ConflictError` when the slug exists."""
        body = ProjectCreate(name=name, slug=slug).to_wire()
        response = self._call(
            "POST", "/v1/projects", params={"orgSlug": org_slug}, json=body, retry=False
        )
        return _parse(ProjectEnvelope, response).project

    # --- org members --------------------------------------------------------------------

    def org_members(self, org_slug: str) -> OrgMembers:
        """The org's members and its invitations not yet taken up."""
        return _parse(OrgMembers, self._call("GET", f"/v1/orgs/{quote(org_slug, safe='')}/members"))

    def invite(self, org_slug: str, email: str) -> OrgInvitation:
        """Invite ``email`` to the org (an owner's call); their next sign-in there joins them."""
        body = InvitationCreate(email=email).to_wire()
        response = self._call(
            "POST", f"/v1/orgs/{quote(org_slug, safe='')}/invitations", json=body, retry=False
        )
        return _parse(InvitationEnvelope, response).invitation

    def cancel_invitation(self, org_slug: str, email: str) -> None:
        """Withdraw an invitation; :class:`~arkor.cloud.NotFoundError` when there is none."""
        path = f"/v1/orgs/{quote(org_slug, safe='')}/invitations/{quote(email, safe='')}"
        self._call("DELETE", path, retry=False)

    def remove_member(self, org_slug: str, user_id: str) -> None:
        """Take a person out of the org (an owner's call); their next request there is 404."""
        path = f"/v1/orgs/{quote(org_slug, safe='')}/members/{quote(user_id, safe='')}"
        self._call("DELETE", path, retry=False)

    # --- jobs -------------------------------------------------------------------------

    def create_job(
        self, scope: ProjectScope, job: JobCreate, *, idempotency_key: str | None = None
    ) -> TrainingJob:
        """Submit a training job.

        With ``idempotency_key`` (one fresh key per submission) a lost answer is retried
        safely: the plane returns the same job for the same key and body.
        """
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        response = self._call(
            "POST",
            "/v1/jobs",
            params=_scope(scope),
            json=job.to_wire(),
            headers=headers,
            retry=idempotency_key is not None,
        )
        return _parse(JobEnvelope, response).job

    def list_jobs(self, scope: ProjectScope) -> list[TrainingJob]:
        """The project's jobs, newest first (every page of them)."""
        jobs: list[TrainingJob] = []
        params = _scope(scope)
        while True:
            page = _parse(JobList, self._call("GET", "/v1/jobs", params=params))
            jobs.extend(page.jobs)
            if not page.next_cursor:
                return jobs
            params = {**_scope(scope), "cursor": page.next_cursor}

    def get_job(
        self, scope: ProjectScope, job_id: str, *, include_events: bool = True
    ) -> JobEnvelope:
        """One job, with its stored events when the plane includes them (and they are wanted)."""
        params = _scope(scope)
        if not include_events:
            params["events"] = "false"
        return _parse(JobEnvelope, self._call("GET", _job_path(job_id), params=params))

    def cancel_job(self, scope: ProjectScope, job_id: str) -> None:
        """Ask the plane to cancel; :class:`~arkor.cloud.ConflictError` if already over."""
        self._call("POST", f"{_job_path(job_id)}/cancel", params=_scope(scope), retry=False)

    def evaluate(
        self,
        scope: ProjectScope,
        job_id: str,
        *,
        checkpoint: int | None = None,
        rows: int | None = None,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> EvalCompleted:
        """Run a completed job's eval again: its base and its final adapter (or checkpoint
        ``checkpoint``) answer its held-out rows (``rows`` of them, else the job's
        ``eval.rows``).

        ``on_progress(done, total)`` hears each finished batch. Returns the event the plane
        stored with the job. A job without an eval, not completed or with an eval already
        running raises :class:`~arkor.cloud.ConflictError`; an unknown checkpoint
        :class:`~arkor.cloud.NotFoundError`; an eval that fails on the plane ``ArkorError``.
        """
        from arkor.errors import ArkorError

        path = f"{_job_path(job_id)}/evals"
        body = EvalRequest(checkpoint=checkpoint, rows=rows).to_wire()
        with self._stream(
            "POST",
            path,
            params=_scope(scope),
            json=body,
            headers={"Accept": "application/x-ndjson"},
            timeout=_EVAL_TIMEOUT,
            retry=False,
        ) as response:
            for line in response.iter_lines():
                if not line.strip():
                    continue
                try:
                    message = _EVAL_LINE.validate_json(line)
                except ValidationError as error:
                    raise CloudApiError(
                        response.status_code,
                        f"The plane's answer to POST {path} does not match the Arkor protocol "
                        f"({error.errors()[0]['msg']})",
                        line,
                    ) from error
                if isinstance(message, EvalProgress):
                    if on_progress is not None:
                        on_progress(message.done, message.total)
                elif isinstance(message, EvalResult):
                    return message.event
                else:
                    raise ArkorError(
                        f"The eval of job {job_id} failed on the plane at {self.base_url}: "
                        f"{message.message}"
                    )
        raise PlaneUnreachableError(
            self.base_url, f"the answer to POST {path} ended before the eval's result"
        )

    @contextmanager
    def stream_events(
        self,
        scope: ProjectScope,
        job_id: str,
        *,
        last_event_id: int | None = None,
        timeout: float | None = None,
    ) -> Iterator[httpx.Response]:
        """One connection to the job's event stream, after ``last_event_id``.

        This is the raw stream; :func:`~arkor.cloud.follow_events` adds reconnection.
        ``timeout`` bounds the wait for each chunk (pings arrive about every 15 s).
        """
        headers = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        with self._stream(
            "GET",
            f"{_job_path(job_id)}/events/stream",
            params=_scope(scope),
            headers=headers,
            timeout=timeout,
            retry=False,
        ) as response:
            yield response

    # --- artifacts and uploads --------------------------------------------------------

    def list_artifacts(self, scope: ProjectScope, job_id: str) -> list[Artifact]:
        """The files a job has produced so far."""
        response = self._call("GET", f"{_job_path(job_id)}/artifacts", params=_scope(scope))
        return _parse(ArtifactList, response).artifacts

    @contextmanager
    def stream_artifact(
        self, scope: ProjectScope, job_id: str, path: str
    ) -> Iterator[httpx.Response]:
        """One artifact's bytes as a raw stream (its sha256 in ``X-Content-Sha256``, when sent)."""
        url = f"{_job_path(job_id)}/artifacts/{quote(path, safe='/')}"
        with self._stream("GET", url, params=_scope(scope)) as response:
            yield response

    def download_artifact(
        self,
        scope: ProjectScope,
        job_id: str,
        path: str,
        destination: Path,
        *,
        progress: Callable[[int], None] | None = None,
    ) -> Path:
        """Stream one artifact into ``destination``, which appears only once complete.

        When the plane sends the file's sha256 (``X-Content-Sha256``), bytes that do not
        match it are refused and nothing is written. ``progress`` hears each chunk's size.
        """
        import hashlib

        from arkor.errors import ArkorError

        destination.parent.mkdir(parents=True, exist_ok=True)
        with self.stream_artifact(scope, job_id, path) as response:
            expected = response.headers.get("X-Content-Sha256")
            digest = hashlib.sha256()

            def checked() -> Iterator[bytes]:
                for chunk in response.iter_bytes():
                    digest.update(chunk)
                    if progress is not None:
                        progress(len(chunk))
                    yield chunk
                if expected is not None and digest.hexdigest() != expected.strip().lower():
                    raise ArkorError(
                        f"The artifact `{path}` of job `{job_id}` arrived corrupted from the "
                        f"plane at {self.base_url}: its bytes hash to sha256 "
                        f"{digest.hexdigest()}, and the plane sent {expected.strip()}. Nothing "
                        "was written. Download it again; if it keeps failing, something between "
                        "you and the plane (a proxy) alters the transfer, or the file changed "
                        "on the plane while it was sent."
                    )

            atomic_write_chunks(destination, checked())
        return destination

    def upload(self, scope: ProjectScope, data: bytes, *, filename: str | None = None) -> Upload:
        """Upload a file's bytes, content-addressed: bytes the project already has aren't sent again.

        ``filename`` travels as ``X-Filename``: its extension tells the plane the format.
        """
        digest = sha256_bytes(data)
        try:
            found = self._call("GET", f"/v1/uploads/{digest}", params=_scope(scope))
        except NotFoundError:
            pass
        else:
            return _parse(UploadEnvelope, found).upload
        headers = {
            "Content-Type": "application/octet-stream",
            "X-Content-Sha256": digest,
        }
        if filename is not None:
            headers["X-Filename"] = filename
        response = self._call(
            "POST", "/v1/uploads", params=_scope(scope), content=data, headers=headers
        )
        return _parse(UploadEnvelope, response).upload

    # --- inference --------------------------------------------------------------------

    def chat(self, scope: ProjectScope, request: InferenceRequest) -> httpx.Response:
        """Run a chat request and return the raw, fully read response.

        With ``stream=False`` the body is one OpenAI ``chat.completion``; otherwise it holds
        every SSE chunk. Use :meth:`stream_chat` to read chunks as they come.
        """
        return self._call(
            "POST",
            "/v1/inference/chat",
            params=_scope(scope),
            json=request.to_wire(),
            timeout=_INFERENCE_TIMEOUT,
            retry=False,
        )

    @contextmanager
    def stream_chat(
        self, scope: ProjectScope, request: InferenceRequest
    ) -> Iterator[httpx.Response]:
        """Run a chat request and yield the response unread, to iterate as it streams."""
        with self._stream(
            "POST",
            "/v1/inference/chat",
            params=_scope(scope),
            json=request.to_wire(),
            timeout=_INFERENCE_TIMEOUT,
            retry=False,
        ) as response:
            yield response

    def inspect_data(self, scope: ProjectScope, request: DataInspectRequest) -> DataInspection:
        """Tokenize and mask sample rows as training would: tokens and learned tokens per row.

        The first call on a plane may load the model's tokenizer, so it may take a while.
        """
        response = self._call(
            "POST",
            "/v1/data/inspect",
            params=_scope(scope),
            json=request.to_wire(),
            timeout=_INFERENCE_TIMEOUT,
            retry=False,
        )
        return _parse(DataInspection, response)

    # --- deployments --------------------------------------------------------------------

    def list_deployments(self, scope: DeploymentScope) -> list[DeploymentDto]:
        """The project's deployments, newest first."""
        response = self._call("GET", "/v1/endpoints", params=_scope(scope))
        return _parse(DeploymentList, response).deployments

    def get_deployment(self, scope: DeploymentScope, ref: str) -> DeploymentDto:
        """One deployment, by id or slug."""
        response = self._call("GET", _endpoint_path(ref), params=_scope(scope))
        return _parse(DeploymentEnvelope, response).deployment

    def create_deployment(
        self, scope: DeploymentScope, deployment: CreateDeploymentInput
    ) -> DeploymentDto:
        """Deploy; :class:`~arkor.cloud.ConflictError` (409) when the slug is taken."""
        response = self._call(
            "POST", "/v1/endpoints", params=_scope(scope), json=deployment.to_wire(), retry=False
        )
        return _parse(DeploymentEnvelope, response).deployment

    def update_deployment(
        self, scope: DeploymentScope, ref: str, changes: UpdateDeploymentInput
    ) -> DeploymentDto:
        """Change what ``changes`` sets (target, enabled, auth mode, retention); the URL stays."""
        response = self._call(
            "PATCH", _endpoint_path(ref), params=_scope(scope), json=changes.to_wire()
        )
        return _parse(DeploymentEnvelope, response).deployment

    def delete_deployment(self, scope: DeploymentScope, ref: str) -> None:
        """Delete a deployment, its keys and its runs."""
        self._call("DELETE", _endpoint_path(ref), params=_scope(scope))

    def list_deployment_keys(self, scope: DeploymentScope, ref: str) -> list[DeploymentKeyDto]:
        """A deployment's keys: prefixes and dates, never the keys themselves."""
        response = self._call("GET", f"{_endpoint_path(ref)}/keys", params=_scope(scope))
        return _parse(DeploymentKeyList, response).keys

    def create_deployment_key(
        self, scope: DeploymentScope, ref: str, key: CreateDeploymentKeyInput | None = None
    ) -> CreateDeploymentKeyResult:
        """A new key; its ``plaintext`` is in this answer only."""
        body = (key or CreateDeploymentKeyInput()).to_wire()
        response = self._call(
            "POST", f"{_endpoint_path(ref)}/keys", params=_scope(scope), json=body, retry=False
        )
        return _parse(CreateDeploymentKeyResult, response)

    def revoke_deployment_key(self, scope: DeploymentScope, ref: str, key_id: str) -> None:
        """Revoke a key: requests with it are refused (401) from now on."""
        path = f"{_endpoint_path(ref)}/keys/{quote(key_id, safe='')}"
        self._call("DELETE", path, params=_scope(scope))

    def list_deployment_runs(
        self, scope: DeploymentScope, ref: str, *, limit: int = 100
    ) -> list[DeploymentRun]:
        """The requests the deployment answered, newest first, as its retention keeps them."""
        params = {**_scope(scope), "limit": str(limit)}
        response = self._call("GET", f"{_endpoint_path(ref)}/runs", params=params)
        return _parse(DeploymentRunList, response).runs

    # --- the policy -------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        auth: bool = True,
        timeout: float | None = None,
        retry: bool = True,
    ) -> httpx.Response:
        """Send a request and read the whole answer; non-2xx raises."""
        request = self._request(method, path, params, json, content, headers, auth, timeout)
        return self._send(request, retry=retry, stream=False)

    @contextmanager
    def _stream(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        retry: bool = True,
    ) -> Iterator[httpx.Response]:
        """Send a request and yield the answer unread; a dropped link raises as unreachable."""
        request = self._request(method, path, params, json, None, headers, True, timeout)
        response = self._send(request, retry=retry, stream=True)
        try:
            yield response
        except httpx.TransportError as error:
            raise PlaneUnreachableError(self.base_url, _describe(error)) from error
        finally:
            response.close()

    def _request(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        json: Any,
        content: bytes | None,
        headers: Mapping[str, str] | None,
        auth: bool,
        timeout: float | None,
    ) -> httpx.Request:
        merged = {CLIENT_HEADER: CLIENT_ID, **(headers or {})}
        if auth and self.token is not None:
            merged["Authorization"] = f"Bearer {self.token}"
        extra: dict[str, Any] = {}
        if timeout is not None:
            extra["timeout"] = httpx.Timeout(timeout, connect=DEFAULT_TIMEOUT.connect)
        return self._http.build_request(
            method,
            self.base_url + path,
            params=params,
            json=json,
            content=content,
            headers=merged,
            **extra,
        )

    def _send(self, request: httpx.Request, *, retry: bool, stream: bool) -> httpx.Response:
        """Send with the retry policy; record deprecation; raise on non-2xx."""
        attempts = self._retries + 1 if retry else 1
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                response = self._http.send(request, stream=stream)
            except httpx.TransportError as error:
                if last or isinstance(error, httpx.UnsupportedProtocol):
                    raise PlaneUnreachableError(self.base_url, _describe(error)) from error
            else:
                _record_deprecation(self.base_url, response)
                if response.is_success:
                    return response
                if last or response.status_code not in _RETRIED_STATUSES:
                    failure = _error(response)
                    response.close()
                    raise failure
                response.close()
            time.sleep(backoff_delay(attempt, base=self._retry_delay, cap=10.0))
        raise AssertionError("unreachable: the last attempt returns or raises")


def _error(response: httpx.Response) -> CloudApiError:
    """The error for a non-2xx answer, with the plane's ``{error}`` message."""
    body: Any = None
    try:
        response.read()
    except httpx.HTTPError:
        pass
    else:
        try:
            body = response.json()
        except ValueError:
            body = response.text
    message = response.reason_phrase or f"HTTP {response.status_code}"
    min_version = None
    if isinstance(body, dict):
        try:
            parsed = UpgradeRequired.model_validate(body)
        except ValidationError:
            pass
        else:
            message, min_version = parsed.error, parsed.min_version
    elif isinstance(body, str) and body.strip():
        message = f"{message}: {body.strip()[:200]}"
    return error_for_status(response.status_code, message, body, min_version=min_version)


def _parse(model: type[_Model], response: httpx.Response) -> _Model:
    """Parse a 2xx body with its wire model; a body that does not fit is the plane's fault."""
    try:
        return model.model_validate_json(response.content)
    except ValidationError as error:
        raise CloudApiError(
            response.status_code,
            f"The plane's answer to {response.request.method} {response.request.url.path} does "
            f"not match the Arkor protocol ({error.errors()[0]['msg']})",
            response.text,
        ) from error


def _scope(scope: ProjectScope) -> dict[str, str]:
    return {"orgSlug": scope.org_slug, "projectSlug": scope.project_slug}


def _endpoint_path(ref: str) -> str:
    return f"/v1/endpoints/{quote(ref, safe='')}"


def _job_path(job_id: str) -> str:
    return f"/v1/jobs/{quote(job_id, safe='')}"


def _describe(error: httpx.TransportError) -> str:
    return str(error) or type(error).__name__


__all__ = [
    "CLIENT_HEADER",
    "CLIENT_ID",
    "CloudApiClient",
    "clear_deprecation_notice",
    "deprecation_notice",
]
