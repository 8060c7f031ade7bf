//! The OpenAPI 3 document, generated from the handlers' annotations and the request and
//! response types themselves, served at `GET /api/v1/openapi.json`.

use std::{collections::HashMap, sync::OnceLock};

use actix_web::HttpResponse;
use utoipa::{
    openapi::{
        path::Operation,
        security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
        ContentBuilder, Ref, RefOr, Response, ResponseBuilder,
    },
    Modify, OpenApi,
};

use crate::api::{
    agents, alert_records, alerts, audit, auth, checkpoints, clients, compliance, device_tokens,
    dispatch, error, list, lone_worker, notifications, shifts, sites, time_off, tours, users,
    webhooks,
};

/// Adds the bearer-token scheme every secured path refers to.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Adds the error answers every operation can give (see `api::error`), so that no annotation
/// has to repeat them and none can forget one; an operation's own `responses(...)` entry for a
/// status wins. Also makes every operationId unique (`<tag>_<handler>`): handlers of different
/// resources share names (`list`, `get`, ...).
struct CommonErrors;

fn error_response(description: &str) -> RefOr<Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
        .into()
}

/// The operations of a path item, with their methods.
fn operations(
    item: &mut utoipa::openapi::PathItem,
) -> impl Iterator<Item = (&'static str, &mut Operation)> {
    [
        ("GET", &mut item.get),
        ("PUT", &mut item.put),
        ("POST", &mut item.post),
        ("DELETE", &mut item.delete),
        ("PATCH", &mut item.patch),
    ]
    .into_iter()
    .filter_map(|(m, op)| op.as_mut().map(|op| (m, op)))
}

impl Modify for CommonErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let templated = path.contains('{');
            for (_, op) in operations(item) {
                if let (Some(tag), Some(id)) = (
                    op.tags.as_ref().and_then(|t| t.first()),
                    op.operation_id.as_ref(),
                ) {
                    op.operation_id = Some(format!("{}_{id}", tag.replace([' ', '-'], "_")));
                }
                let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
                let has_params = templated || op.parameters.as_ref().is_some_and(|p| !p.is_empty());
                let has_body = op.request_body.is_some();
                let mut add = |status: &str, description: &str| {
                    op.responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| error_response(description));
                };
                add("429", "Too many requests from this address (`rate_limited`, `too_many_attempts`); see Retry-After");
                add("503", "The database is unavailable (`unavailable`)");
                if secured {
                    add("401", "No valid bearer token (`unauthorized`)");
                    add("403", "The caller's role may not do this (`forbidden`)");
                }
                if has_params || has_body {
                    add("400", "Malformed request: bad JSON, an unknown or mistyped field, a bad id or query, NUL in text (`bad_json`, `invalid_field`, `invalid_path`, `invalid_query`, `invalid_text`, `empty_update`)");
                }
                if has_body {
                    add(
                        "413",
                        "Body larger than `server.json_body_limit_bytes` (`payload_too_large`)",
                    );
                    add(
                        "415",
                        "Body not sent as `application/json` (`unsupported_media_type`)",
                    );
                    add("422", "Well-formed but invalid (`invalid_value`, `invalid_reference`, ...); `field` names it. Also for rules a schema cannot state: an end before its start, a lat without its lon, a reference to a row that does not exist");
                }
                if templated {
                    add(
                        "404",
                        "No such resource, or not the caller's to see (`not_found`)",
                    );
                }
            }
        }
    }
}

/// The methods a route pattern (`/api/v1/users/{id}`) supports, for the `Allow` header of a
/// 405. Routes outside the document (the page, its assets, the WebSockets, the document
/// itself) are GET only.
pub fn allowed_methods(pattern: &str) -> String {
    static ALLOW: OnceLock<HashMap<String, String>> = OnceLock::new();
    ALLOW
        .get_or_init(|| {
            let mut doc = ApiDoc::openapi();
            doc.paths
                .paths
                .iter_mut()
                .map(|(path, item)| {
                    let methods: Vec<&str> = operations(item).map(|(m, _)| m).collect();
                    (path.clone(), methods.join(", "))
                })
                .collect()
        })
        .get(pattern)
        .cloned()
        .unwrap_or_else(|| "GET".to_owned())
}

/// The control-plane API.
#[derive(OpenApi)]
#[openapi(
    info(title = "BahinLink Dispatch control plane", description = "Users, clients, sites, agents, shifts, checkpoints, time off, device tokens, tours, alerts, notifications, webhooks, compliance reports and the audit trail. JSON is snake_case, times RFC 3339, ids UUIDs."),
    modifiers(&BearerAuth, &CommonErrors),
    paths(
        auth::login, auth::logout, auth::me,
        users::create, users::list, users::get, users::update, users::delete,
        clients::create, clients::list, clients::get, clients::update, clients::delete,
        sites::create, sites::list, sites::get, sites::update, sites::delete,
        checkpoints::create_qr, checkpoints::list_qr, checkpoints::create_nfc, checkpoints::list_nfc,
        checkpoints::deactivate_qr, checkpoints::deactivate_nfc,
        agents::create, agents::list, agents::get, agents::update, agents::delete,
        device_tokens::create, device_tokens::list, device_tokens::revoke,
        shifts::create, shifts::list, shifts::get, shifts::update, shifts::delete,
        time_off::create, time_off::list, time_off::get, time_off::approve, time_off::reject,
        time_off::cancel, time_off::delete,
        dispatch::auto_assign, dispatch::auto_fill, dispatch::emergency, dispatch::live_agents,
        alerts::acknowledge_panic, alerts::resolve_violation, alerts::close_emergency,
        agents::track::track,
        audit::list,
        lone_worker::get, lone_worker::put,
        tours::create, tours::list, tours::get, tours::update, tours::delete, tours::rounds,
        compliance::compliance,
        alert_records::list, alert_records::get, alert_records::acknowledge, alert_records::resolve,
        notifications::list, notifications::read, notifications::read_all,
        webhooks::create, webhooks::list, webhooks::get, webhooks::update, webhooks::delete,
        webhooks::deliveries,
    ),
    components(schemas(error::ErrorBody, error::ErrorDetail, list::Page<users::User>,
        agents::ClientAgent, agents::ClientAgentShift, agents::Track))
)]
pub struct ApiDoc;

/// Serves the document.
pub async fn document() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `{name}` of a path is a documented path parameter (else generators and fuzzers
    /// cannot call the operation), every query parameter is in the query, and operationIds
    /// are unique.
    #[test]
    fn every_operation_is_callable_from_the_document_alone() {
        let mut doc = ApiDoc::openapi();
        let mut ids = std::collections::HashSet::new();
        for (path, item) in doc.paths.paths.iter_mut() {
            let names: Vec<&str> = path
                .split('/')
                .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
                .collect();
            for (method, op) in operations(item) {
                let params = op.parameters.clone().unwrap_or_default();
                for name in &names {
                    assert!(
                        params.iter().any(|p| p.name == *name
                            && p.parameter_in == utoipa::openapi::path::ParameterIn::Path),
                        "{method} {path}: no path parameter {name}"
                    );
                }
                for p in &params {
                    if p.parameter_in == utoipa::openapi::path::ParameterIn::Path {
                        assert!(
                            names.contains(&p.name.as_str()),
                            "{method} {path}: {} is not in the path",
                            p.name
                        );
                    }
                }
                let id = op.operation_id.clone().expect("operationId");
                assert!(ids.insert(id.clone()), "operationId {id} twice");
                assert!(
                    op.responses.responses.contains_key("429"),
                    "{method} {path}: no 429"
                );
            }
        }
        assert_eq!(allowed_methods("/api/v1/users/{id}"), "GET, DELETE, PATCH");
        assert_eq!(allowed_methods("/ws/agent"), "GET");
    }
}
