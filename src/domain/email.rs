//! Login emails: one form, so that the same address never makes two accounts.

/// A plausible email address, trimmed and lower-cased; None when it is not one (or longer
/// than 254 characters, the SMTP limit).
pub fn parse_email(value: &str) -> Option<String> {
    let e = value.trim().to_lowercase();
    let ok = e.chars().count() <= 254
        && e.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        })
        && !e.chars().any(char::is_whitespace)
        && e.matches('@').count() == 1;
    ok.then_some(e)
}

#[cfg(test)]
mod tests {
    use super::parse_email;

    #[test]
    fn emails_are_lower_cased_and_checked() {
        assert_eq!(
            parse_email(" Ops@Example.COM ").as_deref(),
            Some("ops@example.com")
        );
        for bad in ["", "a@b", "a@.b.c", "a b@c.d", "a@b@c.d", "@c.d"] {
            assert!(parse_email(bad).is_none(), "{bad}");
        }
    }
}
