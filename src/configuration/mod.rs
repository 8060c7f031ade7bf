//! Settings: `config/default.toml` (compiled in), then an optional file, then environment
//! variables `BAHINLINK_<SECTION>__<KEY>`, then command-line flags.
//!
//! The default file is the schema: it names every key and its type. An override naming a key
//! it lacks, or giving a value of another type, is refused with the key's name; values are
//! then range-checked, again naming the key. Nothing starts on an invalid setting.

mod sections;
mod validate;

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::{Table, Value};

pub use sections::{
    AlertSettings, AuthSettings, ConsoleSettings, DatabaseSettings, DispatchSettings,
    EmbeddedSettings, GeofenceSettings, HashCost, IngestSettings, LimitSettings, LogFormat,
    LoggingSettings, SafetySettings, ServerSettings, WebhookSettings, WriterSettings,
    MAX_EVENT_BATCH,
};

/// The compiled-in defaults; also the reference documentation of every setting.
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

/// Prefix of the environment variables that override settings.
pub const ENV_PREFIX: &str = "BAHINLINK_";

/// Every setting of the daemon.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// HTTP/WebSocket listener.
    pub server: ServerSettings,
    /// What one client may take: WebSockets, request headers' time, REST requests.
    pub limits: LimitSettings,
    /// PostgreSQL connection, pool and embedded cluster.
    pub database: DatabaseSettings,
    /// Log filter and format.
    pub logging: LoggingSettings,
    /// Sessions, device tokens and password hashing.
    pub auth: AuthSettings,
    /// Agent WebSocket sessions: limits, validation and filtering.
    pub ingest: IngestSettings,
    /// The batching writer of device events.
    pub writer: WriterSettings,
    /// Geofence violation rules.
    pub geofence: GeofenceSettings,
    /// Assignment and emergency dispatch.
    pub dispatch: DispatchSettings,
    /// Control-room consoles.
    pub console: ConsoleSettings,
    /// The alert engine: its tick and escalation delays.
    pub alerts: AlertSettings,
    /// Lone-worker, device-offline and late clock-in rules.
    pub safety: SafetySettings,
    /// Webhook deliveries.
    pub webhooks: WebhookSettings,
}

/// What was wrong with the configuration; every variant names the key or variable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {origin} is not valid TOML: {message}")]
    Syntax { origin: String, message: String },
    #[error("{origin}: unknown setting `{key}` (config/default.toml lists every setting)")]
    UnknownKey { origin: String, key: String },
    #[error("{origin}: setting `{key}` must be {expected}, not {found}")]
    WrongType {
        origin: String,
        key: String,
        expected: &'static str,
        found: String,
    },
    #[error("setting `{key}`: {message}")]
    Invalid { key: String, message: String },
}

impl ConfigError {
    fn invalid(key: &str, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.to_owned(),
            message: message.into(),
        }
    }
}

impl Settings {
    /// The compiled-in defaults alone.
    pub fn defaults() -> Settings {
        Settings::load(None, std::iter::empty()).expect("config/default.toml is valid")
    }

    /// Layers the defaults, `file` (if any) and the `BAHINLINK_*` variables of `env`, then
    /// checks every value.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, ConfigError> {
        let text = match file {
            Some(path) => Some((
                path.display().to_string(),
                std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?,
            )),
            None => None,
        };
        Settings::from_layers(text.as_ref().map(|(o, t)| (o.as_str(), t.as_str())), env)
    }

    /// `load` on a settings file already read: `(origin, text)`, where the origin (its path)
    /// is what error messages name. The property tests and the fuzz target start here.
    pub fn from_layers(
        file: Option<(&str, &str)>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, ConfigError> {
        let mut table: Table = DEFAULT_TOML
            .parse()
            .expect("config/default.toml is valid TOML");
        if let Some((origin, text)) = file {
            let over: Table = text
                .parse()
                .map_err(|e: toml::de::Error| ConfigError::Syntax {
                    origin: origin.to_owned(),
                    message: e.to_string(),
                })?;
            merge(&mut table, over, "", origin)?;
        }
        let mut vars: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .collect();
        vars.sort();
        for (name, value) in vars {
            apply_env(&mut table, &name, &value)?;
        }
        let settings: Settings = serde_path_to_error::deserialize(Value::Table(table))
            .map_err(|e| ConfigError::invalid(&e.path().to_string(), e.inner().to_string()))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Overrides the database URL (DATABASE_URL / --database-url), checking it.
    pub fn with_database_url(mut self, url: Option<String>) -> Result<Settings, ConfigError> {
        if let Some(url) = url.filter(|u| !u.is_empty()) {
            self.database.url = url;
            self.validate()?;
        }
        Ok(self)
    }

    /// Overrides the listen address (--listen).
    pub fn with_listen(mut self, listen: Option<&str>) -> Result<Settings, ConfigError> {
        if let Some(addr) = listen {
            self.server.listen = addr.parse().map_err(|e| {
                ConfigError::invalid("server.listen (--listen)", format!("`{addr}`: {e}"))
            })?;
        }
        Ok(self)
    }
}

/// Recursively overlays `over` on `base`, refusing keys and types the defaults do not have.
fn merge(base: &mut Table, over: Table, prefix: &str, origin: &str) -> Result<(), ConfigError> {
    for (key, value) in over {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        let Some(slot) = base.get_mut(&key) else {
            return Err(ConfigError::UnknownKey {
                origin: origin.to_owned(),
                key: path,
            });
        };
        match (slot, value) {
            (Value::Table(inner), Value::Table(over_inner)) => {
                merge(inner, over_inner, &path, origin)?
            }
            (slot, value) => *slot = coerce(slot, value, &path, origin)?,
        }
    }
    Ok(())
}

/// Checks that `value` has the type of the default `slot` (an integer may stand for a float).
fn coerce(slot: &Value, value: Value, key: &str, origin: &str) -> Result<Value, ConfigError> {
    let wrong = |expected: &'static str, found: &Value| ConfigError::WrongType {
        origin: origin.to_owned(),
        key: key.to_owned(),
        expected,
        found: format!("{} {}", found.type_str(), found),
    };
    match (slot, value) {
        (Value::String(_), v @ Value::String(_)) => Ok(v),
        (Value::Integer(_), v @ Value::Integer(_)) => Ok(v),
        (Value::Float(_), Value::Integer(i)) => Ok(Value::Float(i as f64)),
        (Value::Float(_), v @ Value::Float(_)) => Ok(v),
        (Value::Boolean(_), v @ Value::Boolean(_)) => Ok(v),
        (Value::Array(_), v @ Value::Array(_)) => Ok(v),
        (Value::Table(_), v) => Err(wrong("a table", &v)),
        (Value::String(_), v) => Err(wrong("a string", &v)),
        (Value::Integer(_), v) => Err(wrong("an integer", &v)),
        (Value::Float(_), v) => Err(wrong("a number", &v)),
        (Value::Boolean(_), v) => Err(wrong("true or false", &v)),
        (Value::Array(_), v) => Err(wrong("an array", &v)),
        (Value::Datetime(_), v) => Err(wrong("a date-time", &v)),
    }
}

/// Applies one `BAHINLINK_SECTION__KEY=value` variable, parsing the value as the type of the
/// default it replaces.
fn apply_env(table: &mut Table, name: &str, raw: &str) -> Result<(), ConfigError> {
    let origin = format!("environment variable {name}");
    let rest = &name[ENV_PREFIX.len()..];
    let parts: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
    let key = parts.join(".");
    let unknown = || ConfigError::UnknownKey {
        origin: origin.clone(),
        key: key.clone(),
    };
    let (last, sections) = parts.split_last().ok_or_else(unknown)?;
    let mut current = table;
    for section in sections {
        current = match current.get_mut(section) {
            Some(Value::Table(t)) => t,
            _ => return Err(unknown()),
        };
    }
    let slot = current.get_mut(last).ok_or_else(unknown)?;
    let wrong = |expected: &'static str| ConfigError::WrongType {
        origin: origin.clone(),
        key: key.clone(),
        expected,
        found: format!("`{raw}`"),
    };
    let value = match slot {
        Value::String(_) => Value::String(raw.to_owned()),
        Value::Integer(_) => Value::Integer(raw.trim().parse().map_err(|_| wrong("an integer"))?),
        Value::Float(_) => Value::Float(raw.trim().parse().map_err(|_| wrong("a number"))?),
        Value::Boolean(_) => Value::Boolean(match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => true,
            "false" | "0" | "no" | "off" => false,
            _ => return Err(wrong("true or false")),
        }),
        Value::Array(_) => {
            let parsed: Table = format!("v = {raw}")
                .parse()
                .map_err(|_| wrong("a TOML array"))?;
            match parsed.get("v") {
                Some(v @ Value::Array(_)) => v.clone(),
                _ => return Err(wrong("a TOML array")),
            }
        }
        Value::Table(_) => return Err(wrong("a section, set its keys one by one")),
        Value::Datetime(_) => return Err(wrong("a date-time")),
    };
    *slot = value;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_osmand_listener_is_an_address_or_nothing() {
        let s = Settings::load(
            None,
            env(&[("BAHINLINK_INGEST__OSMAND_LISTEN", "0.0.0.0:5055")]),
        )
        .unwrap();
        assert_eq!(s.ingest.osmand_listen, "0.0.0.0:5055");
        assert!(Settings::load(None, vec![])
            .unwrap()
            .ingest
            .osmand_listen
            .is_empty());
        let msg = Settings::load(
            None,
            env(&[("BAHINLINK_INGEST__OSMAND_LISTEN", "port 5055")]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            msg.contains("ingest.osmand_listen") && msg.contains("port 5055"),
            "{msg}"
        );
    }

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let s = Settings::defaults();
        assert_eq!(s.server.listen, "127.0.0.1:8080".parse().unwrap());
        assert!(s.database.url.is_empty());
        assert_eq!(
            s.database.embedded.data_dir,
            PathBuf::from("./data/postgres")
        );
        assert_eq!(s.logging.format, LogFormat::Text);
    }

    #[test]
    fn environment_overrides_with_types_from_the_defaults() {
        let s = Settings::load(
            None,
            env(&[
                ("BAHINLINK_SERVER__LISTEN", "0.0.0.0:9000"),
                ("BAHINLINK_DATABASE__POOL_SIZE", "4"),
                ("BAHINLINK_DATABASE__EMBEDDED__DATA_DIR", "/var/lib/x"),
                ("BAHINLINK_LOGGING__FORMAT", "json"),
                ("UNRELATED", "1"),
            ]),
        )
        .unwrap();
        assert_eq!(s.server.listen.port(), 9000);
        assert_eq!(s.database.pool_size, 4);
        assert_eq!(s.database.embedded.data_dir, PathBuf::from("/var/lib/x"));
        assert_eq!(s.logging.format, LogFormat::Json);
    }

    #[test]
    fn bad_environment_values_name_the_variable() {
        let err =
            Settings::load(None, env(&[("BAHINLINK_DATABASE__POOL_SIZE", "lots")])).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("BAHINLINK_DATABASE__POOL_SIZE") && msg.contains("integer"),
            "{msg}"
        );

        let err = Settings::load(None, env(&[("BAHINLINK_SERVER__LISTN", "x")])).unwrap_err();
        assert!(err.to_string().contains("server.listn"), "{err}");
    }

    #[test]
    fn invalid_values_name_the_key() {
        let cases = [
            ("BAHINLINK_DATABASE__POOL_SIZE", "0", "database.pool_size"),
            ("BAHINLINK_SERVER__LISTEN", "nowhere", "server.listen"),
            ("BAHINLINK_LOGGING__FORMAT", "xml", "logging.format"),
            (
                "BAHINLINK_DATABASE__URL",
                "postgres://u:secret@host:notaport/db",
                "database.url",
            ),
        ];
        for (var, value, key) in cases {
            let msg = Settings::load(None, env(&[(var, value)]))
                .unwrap_err()
                .to_string();
            assert!(msg.contains(key), "{var}={value}: {msg}");
            assert!(
                !msg.contains("secret"),
                "a password must never be echoed: {msg}"
            );
        }
    }

    #[test]
    fn file_layer_refuses_unknown_keys_and_wrong_types() {
        let dir = std::env::temp_dir().join(format!("bahinlink-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("a.toml");

        std::fs::write(&file, "[server]\nworkers = \"many\"\n").unwrap();
        let msg = Settings::load(Some(&file), vec![]).unwrap_err().to_string();
        assert!(
            msg.contains("server.workers") && msg.contains("integer"),
            "{msg}"
        );

        std::fs::write(&file, "[databse]\nurl = \"x\"\n").unwrap();
        let msg = Settings::load(Some(&file), vec![]).unwrap_err().to_string();
        assert!(msg.contains("databse"), "{msg}");

        std::fs::write(&file, "[database]\npool_size = 3\n").unwrap();
        let s = Settings::load(Some(&file), vec![]).unwrap();
        assert_eq!(s.database.pool_size, 3);
        assert_eq!(
            s.database.connect_timeout_s, 5,
            "keys the file does not name keep their default"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn database_settings_debug_hides_the_url() {
        let s = Settings::load(
            None,
            env(&[("BAHINLINK_DATABASE__URL", "postgres://u:hunter2@h/db")]),
        )
        .unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
