//! Property tests of every parser that takes bytes from outside: device frames, console
//! frames, GeoJSON fences, REST bodies (sites, shifts, tours), and the settings (file and environment). For
//! arbitrary and for structured inputs: no panic, and every refusal is the documented error
//! (a `Rejection` with a message, a console `error` code with a message, a `GeofenceError`, a 400/422 `ApiError` naming the problem,
//! a `ConfigError` naming the key). Run with the rest of `./dev test`; 256 cases each.

use std::sync::Arc;

use proptest::prelude::*;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::{
    api::{error::ApiError, extract::parse_json},
    configuration::{ConfigError, Settings},
    domain::geofence::GeofenceSpec,
    geofence::{FenceSnapshot, SiteFence},
    ingest::protocol::{parse_frame, EventKind},
    ws::console::{parse_console_text, ConsoleErrorCode, KINDS},
};

/// Any JSON value, a few levels deep, with the awkward numbers and strings.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        prop_oneof![-200.0..200.0f64, -1e3..1e3f64].prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::String),
        Just(json!(Uuid::nil().to_string())),
        Just(json!("2026-12-02T10:00:00Z")),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((".{0,12}", inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A device event built from the protocol's own field names, each with any JSON value.
fn device_event() -> impl Strategy<Value = Value> {
    const KEYS: &[&str] = &[
        "type",
        "seq",
        "ts",
        "lat",
        "lon",
        "accuracy_m",
        "speed_mps",
        "heading_deg",
        "altitude_m",
        "battery_pct",
        "code",
        "tag_uid",
        "shift_id",
        "method",
        "note",
        "emergency_id",
        "accept",
        "check_id",
    ];
    let types = prop_oneof![
        Just("position"),
        Just("qr_scan"),
        Just("nfc_scan"),
        Just("clock_in"),
        Just("clock_out"),
        Just("break_start"),
        Just("break_end"),
        Just("panic"),
        Just("dispatch_reply"),
        Just("check_in_reply"),
        Just("nope"),
    ];
    (
        types,
        prop::collection::vec((prop::sample::select(KEYS), json_value()), 0..10),
        any::<bool>(),
    )
        .prop_map(|(kind, fields, typed)| {
            let mut m = Map::new();
            if typed {
                m.insert("type".into(), json!(kind));
            }
            for (k, v) in fields {
                m.insert(k.to_owned(), v);
            }
            Value::Object(m)
        })
}

proptest! {
    #[test]
    fn any_text_is_a_device_frame_or_a_named_rejection(text in ".{0,300}") {
        for result in parse_frame(&text) {
            if let Err(r) = result {
                prop_assert!(!r.message.is_empty());
                prop_assert!(!r.code.as_str().is_empty());
            }
        }
    }

    #[test]
    fn structured_device_events_parse_or_are_refused_by_name(
        events in prop::collection::vec(device_event(), 1..4),
        as_array in any::<bool>(),
    ) {
        let text = if as_array || events.len() > 1 {
            Value::Array(events.clone()).to_string()
        } else {
            events[0].to_string()
        };
        let results = parse_frame(&text);
        prop_assert_eq!(results.len(), if as_array || events.len() > 1 { events.len() } else { 1 });
        for result in results {
            match result {
                Ok(ev) => {
                    prop_assert!(ev.seq <= i64::MAX as u64);
                    if let EventKind::Position(fix) = &ev.kind {
                        prop_assert!(fix.lat.is_finite() && fix.lon.is_finite());
                    }
                }
                Err(r) => prop_assert!(!r.message.is_empty()),
            }
        }
    }

    #[test]
    fn any_console_text_subscribes_or_is_refused_with_a_code_and_message(text in ".{0,300}") {
        if let Err((_, message)) = parse_console_text(&text) {
            prop_assert!(!message.is_empty());
        }
    }

    #[test]
    fn structured_console_messages_subscribe_exactly_when_well_formed(
        kind in prop_oneof![Just("subscribe".to_owned()), "[a-z_]{0,12}"],
        site_ids in prop::option::of(prop::collection::vec(
            prop_oneof![any::<u128>().prop_map(|n| json!(Uuid::from_u128(n))), json_value()], 0..4)),
        kinds in prop::option::of(prop::collection::vec(
            prop_oneof![prop::sample::select(KINDS).prop_map(|k| json!(k)), json_value()], 0..4)),
        extra in prop::option::of(("[a-z]{1,8}", json_value())),
    ) {
        let mut msg = json!({"type": kind, "site_ids": site_ids, "kinds": kinds});
        if let Some((key, value)) = &extra {
            msg[key.as_str()] = value.clone();
        }
        let well_formed = extra.as_ref().is_none_or(|(k, _)| ["type", "site_ids", "kinds"].contains(&k.as_str()))
            && msg["site_ids"].as_array().is_none_or(|a| a.iter().all(|v| v.as_str().is_some_and(|s| Uuid::parse_str(s).is_ok())))
            && msg["site_ids"].is_array() | msg["site_ids"].is_null()
            && msg["kinds"].as_array().is_none_or(|a| a.iter().all(Value::is_string))
            && msg["kinds"].is_array() | msg["kinds"].is_null()
            && msg["type"].is_string();
        match parse_console_text(&msg.to_string()) {
            Ok(sub) => {
                prop_assert!(well_formed, "{msg}");
                prop_assert_eq!(sub.kind.as_str(), "subscribe");
                prop_assert!(sub.kinds.iter().flatten().all(|k| KINDS.contains(&k.as_str())));
            }
            Err((code, message)) => {
                prop_assert!(!message.is_empty());
                let expected = if !well_formed {
                    ConsoleErrorCode::BadJson
                } else if msg["type"] != "subscribe" {
                    ConsoleErrorCode::UnknownType
                } else {
                    ConsoleErrorCode::UnknownKind
                };
                prop_assert_eq!(code, expected, "{} → {}", msg, message);
            }
        }
    }

    #[test]
    fn any_json_is_a_geofence_or_a_named_refusal(v in json_value()) {
        if let Err(e) = GeofenceSpec::parse(&v) {
            prop_assert!(!e.0.is_empty());
        }
    }

    #[test]
    fn parsed_polygons_and_circles_answer_every_point(
        ring in prop::collection::vec((-180.0..180.0f64, -90.0..90.0f64), 0..8),
        close in any::<bool>(),
        radius in -10.0..60_000.0f64,
        points in prop::collection::vec((-100.0..100.0f64, -200.0..200.0f64), 1..8),
    ) {
        let mut coords: Vec<Value> = ring.iter().map(|(lon, lat)| json!([lon, lat])).collect();
        if close {
            if let Some(first) = coords.first().cloned() {
                coords.push(first);
            }
        }
        let shapes = [
            json!({"type": "Polygon", "coordinates": [coords]}),
            json!({"type": "Circle", "center": ring.first().map(|(lon, lat)| json!([lon, lat])), "radius_m": radius}),
        ];
        for shape in shapes {
            if let Ok(spec) = GeofenceSpec::parse(&shape) {
                let fence = Arc::new(SiteFence {
                    site_id: Uuid::nil(),
                    client_id: Uuid::nil(),
                    version: 1,
                    shape: spec.shape,
                });
                let (clat, clon) = fence.centre();
                prop_assert!(clat.is_finite() && clon.is_finite());
                let snapshot = FenceSnapshot::build(vec![fence.clone()]);
                for (lat, lon) in &points {
                    let _ = fence.contains(*lat, *lon);
                    let _ = snapshot.containing(*lat, *lon).count();
                }
            }
        }
    }

    #[test]
    fn rest_bodies_parse_or_are_a_400_or_422_naming_the_problem(
        v in json_value(),
        junk in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let bytes = v.to_string().into_bytes();
        for input in [&bytes[..], &junk[..]] {
            let results: [Result<(), ApiError>; 3] = [
                parse_json::<crate::api::sites::CreateSite>(input).map(|_| ()),
                parse_json::<crate::api::shifts::CreateShift>(input).map(|_| ()),
                parse_json::<crate::api::tours::CreateTour>(input).map(|_| ()),
            ];
            for r in results {
                if let Err(e) = r {
                    let ok = matches!(e, ApiError::BadRequest { .. } | ApiError::Unprocessable { .. });
                    prop_assert!(ok, "{e:?}");
                    prop_assert!(!e.to_string().is_empty());
                }
            }
        }
    }

    #[test]
    fn settings_from_the_environment_load_or_name_the_key(
        section in prop::sample::select(&["SERVER", "DATABASE", "INGEST", "ALERTS", "SAFETY", "WEBHOOKS", "LIMITS", "CONSOLE", "NOPE"][..]),
        key in "[A-Z_]{1,24}",
        value in ".{0,30}",
    ) {
        let name = format!("BAHINLINK_{section}__{key}");
        match Settings::load(None, [(name, value)]) {
            Ok(_) => {}
            Err(e) => {
                let text = e.to_string();
                prop_assert!(!text.is_empty());
                let named = !matches!(e, ConfigError::UnknownKey { .. } | ConfigError::WrongType { .. })
                    || text.to_lowercase().contains(&section.to_lowercase());
                prop_assert!(named, "{text}");
            }
        }
    }

    #[test]
    fn any_settings_file_loads_or_is_refused_with_a_message(text in ".{0,200}") {
        let dir = std::env::temp_dir().join(format!("bahinlink-proptest-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join(format!("{}.toml", Uuid::new_v4()));
        std::fs::write(&path, &text).unwrap();
        let result = Settings::load(Some(&path), std::iter::empty());
        let _ = std::fs::remove_file(&path);
        if let Err(e) = result {
            prop_assert!(!e.to_string().is_empty());
        }
    }
}
