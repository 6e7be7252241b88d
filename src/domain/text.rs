//! Slugs, designation codes and bounded free text, parsed once at the edge.

use serde::{Deserialize, Serialize};
use std::fmt;

use super::Invalid;

/// The address of a fund, campaign or stream: `^[a-z0-9][a-z0-9-]{1,62}$`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Slug(String);

impl From<Slug> for String {
    fn from(slug: Slug) -> String {
        slug.0
    }
}

impl TryFrom<String> for Slug {
    type Error = Invalid;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Slug::parse("slug", &value)
    }
}

impl Slug {
    pub fn parse(field: &str, value: &str) -> Result<Slug, Invalid> {
        let bytes = value.as_bytes();
        let first_ok = bytes
            .first()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        let rest_ok = bytes
            .iter()
            .skip(1)
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
        if first_ok && rest_ok && (2..=63).contains(&bytes.len()) {
            Ok(Slug(value.to_owned()))
        } else {
            Err(Invalid::new(
                field,
                "must be 2 to 63 characters of a-z, 0-9 and '-', starting with a letter or digit",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The code of one of a fund's program areas: `^[a-z][a-z0-9_-]{0,31}$`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct DesignationCode(String);

impl DesignationCode {
    pub fn parse(field: &str, value: &str) -> Result<DesignationCode, Invalid> {
        let bytes = value.as_bytes();
        let first_ok = bytes.first().is_some_and(|b| b.is_ascii_lowercase());
        let rest_ok = bytes
            .iter()
            .skip(1)
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b'-');
        if first_ok && rest_ok && bytes.len() <= 32 {
            Ok(DesignationCode(value.to_owned()))
        } else {
            Err(Invalid::new(
                field,
                "must be 1 to 32 characters of a-z, 0-9, '_' and '-', starting with a letter",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DesignationCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Trims `value` and checks it holds 1 to `max_chars` characters (Unicode scalar
/// values, so 32 Chinese characters count as 32) and no control characters.
pub fn bounded_text(field: &str, value: &str, max_chars: usize) -> Result<String, Invalid> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(Invalid::new(field, "must not be empty"));
    }
    if trimmed.chars().count() > max_chars {
        return Err(Invalid::new(
            field,
            format!("must be at most {max_chars} characters"),
        ));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(Invalid::new(field, "must not contain control characters"));
    }
    Ok(trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn slugs() {
        for good in ["ab", "xiangxi-live-01", "0a", &"a".repeat(63)] {
            assert!(Slug::parse("slug", good).is_ok(), "{good}");
        }
        for bad in ["a", "-ab", "Ab", "a_b", "a b", "", &"a".repeat(64), "直播"] {
            assert!(Slug::parse("slug", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn designation_codes() {
        for good in ["education", "daily_care", "a", "social-practice"] {
            assert!(DesignationCode::parse("code", good).is_ok(), "{good}");
        }
        for bad in ["", "1abc", "Education", "a b", &"a".repeat(33)] {
            assert!(DesignationCode::parse("code", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bounded_text_counts_characters_not_bytes() {
        let name = "慈".repeat(32);
        assert_eq!(
            bounded_text("name", &name, 32).as_deref(),
            Ok(name.as_str())
        );
        assert!(bounded_text("name", &"慈".repeat(33), 32).is_err());
        assert!(bounded_text("name", "   ", 32).is_err());
        assert!(bounded_text("name", "a\u{0}b", 32).is_err());
        assert_eq!(bounded_text("name", "  小明 ", 32).as_deref(), Ok("小明"));
    }

    proptest! {
        #[test]
        fn slug_parse_matches_the_contract_pattern(s in "[a-z0-9-]{0,70}") {
            let expected = s.len() >= 2 && s.len() <= 63 && !s.starts_with('-');
            prop_assert_eq!(Slug::parse("slug", &s).is_ok(), expected);
        }
    }
}
