"""The "Compliance reports" page: a FastAPI app the Airflow plugin mounts at /reglife/reports.

Only an authenticated Airflow user holding one of the roles in the policy's
`report.download_roles` sees the list or gets a file. Authentication is Airflow's own: the
API server's `get_user` dependency validates the JWT (the UI's `_token` cookie, or an
`Authorization: Bearer` header) with the configured auth manager, so the page trusts exactly
what the rest of Airflow trusts. An anonymous request gets a 401 with no report name, byte or
URL; an authenticated user without the role gets a 403.

Downloads go through this app, never to a URL printed in the page: for S3 it answers with a
redirect to a presigned URL that expires after `report.download_url_ttl`, made at click time
for that user; for a local folder it streams the file.
"""
from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse
from jinja2 import Environment, PackageLoader, select_autoescape

log = logging.getLogger(__name__)

URL_PREFIX = "/reglife/reports"
NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def user_roles(user: Any) -> set[str]:
    """Role names of an Airflow user, lower-cased, whatever the auth manager.

    The simple auth manager gives one `role` (viewer, user, op, admin); the FAB auth manager a
    list of `roles` objects with a `name`; other managers may expose `groups`.
    """
    names: set[str] = set()
    role = getattr(user, "role", None)
    if isinstance(role, str):
        names.add(role)
    for attribute in ("roles", "groups"):
        for entry in getattr(user, attribute, None) or []:
            name = entry if isinstance(entry, str) else getattr(entry, "name", None)
            if name:
                names.add(name)
    return {name.strip().lower() for name in names if name.strip()}


def _policy():
    from . import runtime

    return runtime.policy()


def _s3_settings(conn_id: str) -> dict:
    """S3 endpoint and keys from an Airflow Connection, read the way the API server reads them."""
    from airflow.exceptions import AirflowNotFoundException
    from airflow.models.connection import Connection

    try:
        conn = Connection.get_connection_from_secrets(conn_id)
    except AirflowNotFoundException:
        return {}       # the standard AWS credential chain (pod identity, env) applies
    extra = conn.extra_dejson or {}
    return {"endpoint_url": extra.get("endpoint_url"), "access_key": conn.login or None,
            "secret_key": conn.password or None, "region": extra.get("region_name")}


def _store(policy):
    from ..report.run import report_location, report_store

    s3 = _s3_settings(policy.report.connection_id) if report_location(policy.report).startswith("s3://") else {}
    return report_store(policy.report, s3=s3)


async def allowed_user(request: Request) -> Any:
    """The authenticated user, if one of their roles may see reports; 401/403 otherwise."""
    # Imported here, not at module level: the plugin module is loaded by every Airflow
    # component, and only the API server needs its security machinery.
    from airflow.api_fastapi.core_api.security import (
        bearer_scheme,
        get_user,
        oauth2_scheme,
    )

    # Airflow's own dependency, called with the credentials it declares (header or cookie).
    user = await get_user(request, await oauth2_scheme(request), await bearer_scheme(request))
    allowed = {role.strip().lower() for role in _policy().report.download_roles}
    if not user_roles(user) & allowed:
        log.warning("compliance reports refused to %s: roles %s, allowed %s", user.get_name(),
                    sorted(user_roles(user)) or "none", sorted(allowed))
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            "your Airflow roles do not include one that may download compliance reports")
    return user


User = Annotated[Any, Depends(allowed_user)]

_templates = Environment(loader=PackageLoader("registry_lifecycle.airflow", "templates"),
                         autoescape=select_autoescape(default=True, default_for_string=True))


def create_app() -> FastAPI:
    app = FastAPI(title="Registry Lifecycle: compliance reports", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(HTTPException)
    async def _refuse(request: Request, error: HTTPException):
        # Plain, uniform refusals: no report names, paths or URLs in an answer to a stranger.
        return JSONResponse({"detail": error.detail}, status_code=error.status_code, headers=NO_STORE)

    @app.get("/api", include_in_schema=False)
    def listing(user: User) -> JSONResponse:
        store = _store(_policy())
        return JSONResponse({"location": store.location, "reports": [r.as_dict() for r in store.reports()]},
                            headers=NO_STORE)

    @app.get("/", response_class=HTMLResponse)
    def page(request: Request, user: User) -> HTMLResponse:
        from ..config import format_duration

        policy = _policy()
        store = _store(policy)
        reports = store.reports()
        base = str(request.url.path).rstrip("/")
        html = _templates.get_template("reports.html.j2").render(
            reports=reports, base=base, user=user.get_name(), location=store.location,
            ttl=format_duration(policy.report.download_url_ttl), roles=", ".join(policy.report.download_roles))
        return HTMLResponse(html, headers=NO_STORE)

    @app.get("/download/{label}/{stamp}/{name:path}")
    def download(label: str, stamp: str, name: str, user: User):
        from ..report.storage import S3ReportStore, StorageError, content_type

        policy = _policy()
        store = _store(policy)
        try:
            report = store.get(label, stamp)
            if isinstance(store, S3ReportStore):
                url = store.download_url(report, name, policy.report.download_url_ttl)
                log.info("compliance report %s/%s/%s downloaded by %s", label, stamp, name, user.get_name())
                return RedirectResponse(url, status_code=status.HTTP_303_SEE_OTHER, headers=NO_STORE)
            path = store.path(report, name)
        except StorageError:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such report file") from None
        log.info("compliance report %s/%s/%s downloaded by %s", label, stamp, name, user.get_name())
        return FileResponse(path, media_type=content_type(name), headers=NO_STORE,
                            content_disposition_type="inline" if name.endswith((".pdf", ".html")) else "attachment",
                            filename=name.rsplit("/", 1)[-1])

    return app
