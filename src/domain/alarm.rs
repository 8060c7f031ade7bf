//! Where a panic alarm is placed: the device's own fix when it sent one, else what the daemon
//! knows of the agent (`panic_dispatches.location_source`, the consoles' `location_source`).

use serde::Serialize;

/// Why a panic is placed where it is (docs/protocol.md, "Panic").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PanicLocationSource {
    /// The panic event's own fix.
    Device,
    /// The session's last trusted fix, recent enough.
    LastFix,
    /// The centre of the duty shift's site.
    SiteCentre,
    /// The last trusted fix, older than `ingest.panic_recent_fix_s`.
    StaleFix,
    /// Nowhere known: shown to consoles, nobody can be sent.
    #[serde(rename = "NONE")]
    Nowhere,
}

impl PanicLocationSource {
    /// The database label (enum `"PanicLocationSource"`).
    pub fn as_str(self) -> &'static str {
        match self {
            PanicLocationSource::Device => "DEVICE",
            PanicLocationSource::LastFix => "LAST_FIX",
            PanicLocationSource::SiteCentre => "SITE_CENTRE",
            PanicLocationSource::StaleFix => "STALE_FIX",
            PanicLocationSource::Nowhere => "NONE",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::PanicLocationSource::*;

    #[test]
    fn labels_are_the_same_in_json_and_in_the_database() {
        for source in [Device, LastFix, SiteCentre, StaleFix, Nowhere] {
            let json = serde_json::to_string(&source).unwrap();
            assert_eq!(json, format!("\"{}\"", source.as_str()));
        }
    }
}
