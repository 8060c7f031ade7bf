"""Schemathesis hooks of the REST contract test (.ci/schemathesis/schemathesis.toml).

- A generated PATCH /api/v1/users/{id} aimed at the contract test's own ADMIN may not change
  its password or email: either would end the session and make the re-login fail for the rest
  of the run.
- In the stateful phase a link can carry a JSON null from a response (a user's client_id) into
  an {id} path segment, which is then sent as the text "None" and counted as schema-valid; the
  server's 400 invalid_path is right, so that one failure is dropped."""
import os

import schemathesis

CI_USER_ID = os.environ.get("ST_USER_ID", "")


@schemathesis.hook
def before_call(context, case, kwargs):
    if (
        CI_USER_ID
        and case.operation.label == "PATCH /api/v1/users/{id}"
        and str((case.path_parameters or {}).get("id")) == CI_USER_ID
        and isinstance(case.body, dict)
    ):
        case.body.pop("password", None)
        case.body.pop("email", None)


@schemathesis.hook
def filter_failure(context, failure, case, response):
    # The value may be the text "None" or Python's None itself, depending on the link.
    if failure.code == "ST202" and any(
        v is None or str(v) == "None" for v in (case.path_parameters or {}).values()
    ):
        return False
    return True
