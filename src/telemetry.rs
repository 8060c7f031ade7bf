//! Structured logging with `tracing`: level from RUST_LOG (else `logging.level`), text or JSON.

use tracing_subscriber::{fmt, EnvFilter};

use crate::configuration::{LogFormat, LoggingSettings};

/// Installs the global subscriber, writing to stderr so that command output on stdout stays
/// machine-readable. A second call (tests build many apps in one process) is a no-op.
pub fn init(settings: &LoggingSettings) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match settings.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
