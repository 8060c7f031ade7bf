//! What identifies a checkpoint when a guard scans it.

/// An NFC tag's UID in its one stored form: upper-case hex of 4, 7 or 10 bytes. Readers
/// report it with or without ':', ' ' or '-' between bytes and in either case; all of those
/// parse to the same `TagUid`, so a scan matches the tag registered through the API.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TagUid(String);

impl TagUid {
    /// Parses a UID as a reader or an operator wrote it; None when it is not 4, 7 or 10
    /// bytes of hex.
    pub fn parse(raw: &str) -> Option<TagUid> {
        let hex: String = raw
            .chars()
            .filter(|c| *c != ':' && *c != ' ' && *c != '-')
            .collect::<String>()
            .to_ascii_uppercase();
        let ok = matches!(hex.len(), 8 | 14 | 20) && hex.bytes().all(|b| b.is_ascii_hexdigit());
        ok.then_some(TagUid(hex))
    }

    /// The stored form (`qr_codes.code` of an NFC checkpoint).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The stored form, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::TagUid;

    #[test]
    fn tag_uids_normalise() {
        assert_eq!(
            TagUid::parse("04:a2:24:b2:c9:3a:80")
                .map(TagUid::into_string)
                .as_deref(),
            Some("04A224B2C93A80")
        );
        assert_eq!(
            TagUid::parse("DEADBEEF")
                .map(TagUid::into_string)
                .as_deref(),
            Some("DEADBEEF")
        );
        assert!(TagUid::parse("XYZ").is_none());
        assert!(
            TagUid::parse("0102030405").is_none(),
            "5 bytes is not a tag UID length"
        );
    }
}

/// How a patrol scan was judged (`qr_code_scans.validation_result`, the `result` of the
/// device's `checkpoint` frame and of the consoles' `checkpoint_scan` event).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScanResult {
    /// An active checkpoint of the agent's site, close enough.
    Valid,
    /// No checkpoint has this code.
    UnknownCode,
    /// The checkpoint is deactivated, deleted or expired.
    Inactive,
    /// A checkpoint of another site than the agent's duty site.
    WrongSite,
    /// Scanned farther from the checkpoint than it allows.
    TooFar,
}

impl ScanResult {
    /// The stored label.
    pub fn as_str(self) -> &'static str {
        match self {
            ScanResult::Valid => "valid",
            ScanResult::UnknownCode => "unknown_code",
            ScanResult::Inactive => "inactive",
            ScanResult::WrongSite => "wrong_site",
            ScanResult::TooFar => "too_far",
        }
    }
}
