//! The OpenAPI 3 document, generated from the handlers' annotations and the request and
//! response types themselves, served at `GET /api/v1/openapi.json`.

use actix_web::HttpResponse;
use utoipa::{
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
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

/// The control-plane API.
#[derive(OpenApi)]
#[openapi(
    info(title = "BahinLink Dispatch control plane", description = "Users, clients, sites, agents, shifts, checkpoints, time off, device tokens, tours, alerts, notifications, webhooks, compliance reports and the audit trail. JSON is snake_case, times RFC 3339, ids UUIDs."),
    modifiers(&BearerAuth),
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
