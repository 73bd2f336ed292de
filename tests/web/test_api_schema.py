"""schemathesis over the API's own OpenAPI description, against the live server: no answer is a 500,
every status is documented, every body matches its schema."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from importer.accounts.api_tokens import create_token
from importer.web import WebConfig, create_app
from tests.web.conftest import Live, activate_with_library, make_org


def _description() -> dict[str, Any]:
    # The description the app serves, made without a database or a server (nothing runs yet).
    app = create_app(None, WebConfig(secret_key="k" * 40))  # type: ignore[arg-type]
    return app.openapi()


schema = schemathesis.openapi.from_dict(_description())


@pytest.fixture(scope="module")
def seeded(live: Live) -> dict[str, Any]:
    """An organization with an active Owner and the Owner's API token."""
    org = make_org(live.engine)
    activate_with_library(live.engine, org)
    return {"org_id": org.id, "token": create_token(live.engine, org.name, email=org.owner).token}


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_answers_as_documented(case: schemathesis.Case, live: Live, seeded: dict[str, Any]) -> None:
    if "org_id" in (case.path_parameters or {}):
        case.path_parameters["org_id"] = seeded["org_id"]  # reach the real handlers, not only 404s
    # Schema-valid is not always acceptable: an opaque cursor or a sheet rule (a blank name) is
    # refused with 400/422 by design, so that one check is left out; the others all run.
    case.call_and_validate(
        base_url=live.url,
        headers={"Authorization": f"Bearer {seeded['token']}"},
        excluded_checks=[positive_data_acceptance],
    )


def test_the_openapi_description_is_served(live: Live) -> None:
    import httpx

    served = httpx.get(f"{live.url}/api/openapi.json").json()
    assert {"/api/v1/orgs", "/api/v1/orgs/{org_id}/members"} <= set(served["paths"])
