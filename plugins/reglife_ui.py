"""The Registry Lifecycle Airflow plugin: the "Compliance reports" download page.

A FastAPI app mounted by the API server at /reglife/reports (see
registry_lifecycle.airflow.report_page), and a nav entry under Browse that opens it inside
the Airflow UI. The page itself checks the user (Airflow's JWT) and the role the policy names.
"""
from airflow.plugins_manager import AirflowPlugin
from registry_lifecycle.airflow.report_page import URL_PREFIX, create_app


class RegistryLifecyclePlugin(AirflowPlugin):
    name = "registry_lifecycle"
    fastapi_apps = [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "Registry Lifecycle: compliance reports"}]
    external_views = [{"name": "Compliance reports", "href": f"{URL_PREFIX}/", "destination": "nav",
                       "category": "browse", "url_route": "compliance-reports"}]
