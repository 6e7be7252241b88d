//! A viewer's pledge: parsing it against its campaign's rules, and the refusals a viewer
//! can get, each with its contract code.

use sha2::{Digest, Sha256};
use std::collections::HashSet;

use super::{CampaignStatus, Currency, DesignationCode, Invalid, Money, Slug, bounded_text};

/// The longest donor name shown, in characters.
pub const MAX_DONOR_NAME: usize = 32;
/// The longest message shown, in characters.
pub const MAX_MESSAGE: usize = 140;

/// A pledge as a client sent it, before any check (CONTRACT §6). Over HTTP `stream`
/// names the stream; on a stream's WebSocket it may be left out.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PledgeFields {
    #[schema(example = "xiangxi-live-01")]
    pub stream: Option<String>,
    /// Minor units.
    pub amount: i64,
    #[schema(example = "CNY")]
    pub currency: String,
    pub donor_name: Option<String>,
    #[serde(default)]
    pub anonymous: bool,
    pub message: Option<String>,
    /// One of the fund's designation codes; absent means unrestricted.
    pub designation: Option<String>,
    /// An opaque id the page keeps per browser; unique donors are counted over it.
    pub donor_ref: Option<String>,
    /// 8 to 64 characters of `[A-Za-z0-9_-]`; a retry with the same key and body
    /// returns the first answer.
    pub idempotency_key: String,
}

/// What a pledge is checked against: its campaign's rules at this moment.
#[derive(Debug, Clone)]
pub struct PledgeRules {
    pub currency: Currency,
    pub min_amount: Money,
    pub max_amount: Money,
    pub designations: HashSet<String>,
    pub status: CampaignStatus,
}

/// The key a client sends so that its retries never pledge twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(value: &str) -> Result<Self, Invalid> {
        let ok = (8..=64).contains(&value.len())
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok {
            Ok(Self(value.to_owned()))
        } else {
            Err(Invalid::new(
                "idempotency_key",
                "must be 8 to 64 characters of A-Z, a-z, 0-9, '_' and '-'",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A pledge that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pledge {
    pub stream: Slug,
    pub amount: Money,
    pub currency: Currency,
    pub donor_name: Option<String>,
    pub anonymous: bool,
    pub message: Option<String>,
    pub designation: Option<DesignationCode>,
    pub donor_ref: Option<String>,
    pub idempotency_key: IdempotencyKey,
}

/// Why a pledge is refused; each maps to one contract code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("amount must be between {min} and {max} minor units")]
    AmountOutOfRange { min: Money, max: Money },
    #[error("this campaign takes {expected} only")]
    CurrencyMismatch { expected: Currency },
    #[error("{0:?} is not one of the fund's designations")]
    UnknownDesignation(String),
    #[error("the campaign is not live ({0})")]
    CampaignNotLive(&'static str),
    #[error("the campaign is closed")]
    CampaignClosed,
}

impl Refusal {
    /// The contract's error code.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Invalid(_) => "invalid_request",
            Refusal::AmountOutOfRange { .. } => "amount_out_of_range",
            Refusal::CurrencyMismatch { .. } => "currency_mismatch",
            Refusal::UnknownDesignation(_) => "unknown_designation",
            Refusal::CampaignNotLive(_) => "campaign_not_live",
            Refusal::CampaignClosed => "campaign_closed",
        }
    }
}

fn optional_text(field: &str, value: Option<&str>, max: usize) -> Result<Option<String>, Invalid> {
    match value {
        Some(v) if !v.trim().is_empty() => bounded_text(field, v, max).map(Some),
        _ => Ok(None),
    }
}

impl Pledge {
    /// Checks `fields` for `stream` against its campaign's `rules`. The campaign's state
    /// is checked first: a closed campaign refuses every pledge, however well formed.
    pub fn parse(
        stream: Slug,
        fields: &PledgeFields,
        rules: &PledgeRules,
    ) -> Result<Pledge, Refusal> {
        match rules.status {
            CampaignStatus::Live => {}
            CampaignStatus::Closed => return Err(Refusal::CampaignClosed),
            CampaignStatus::Scheduled => return Err(Refusal::CampaignNotLive("not started yet")),
            CampaignStatus::Ended => return Err(Refusal::CampaignNotLive("it has ended")),
        }
        let idempotency_key = IdempotencyKey::parse(&fields.idempotency_key)?;
        let currency = Currency::parse("currency", &fields.currency)?;
        if currency != rules.currency {
            return Err(Refusal::CurrencyMismatch {
                expected: rules.currency,
            });
        }
        let amount = Money::positive("amount", fields.amount).ok();
        let amount = amount
            .filter(|a| (rules.min_amount..=rules.max_amount).contains(a))
            .ok_or(Refusal::AmountOutOfRange {
                min: rules.min_amount,
                max: rules.max_amount,
            })?;
        let designation = match fields.designation.as_deref() {
            None | Some("") => None,
            Some(code) if rules.designations.contains(code) => {
                Some(DesignationCode::parse("designation", code)?)
            }
            Some(code) => return Err(Refusal::UnknownDesignation(code.to_owned())),
        };
        let donor_ref = optional_text("donor_ref", fields.donor_ref.as_deref(), 128)?;
        Ok(Pledge {
            stream,
            amount,
            currency,
            donor_name: optional_text("donor_name", fields.donor_name.as_deref(), MAX_DONOR_NAME)?,
            anonymous: fields.anonymous,
            message: optional_text("message", fields.message.as_deref(), MAX_MESSAGE)?,
            designation,
            donor_ref,
            idempotency_key,
        })
    }

    /// A digest of everything the client chose, so a retry with the same idempotency
    /// key is recognised as the same request (same digest) or a different one.
    pub fn fingerprint(&self) -> String {
        let mut hasher = Sha256::new();
        let mut field = |value: &str| {
            hasher.update((value.len() as u64).to_be_bytes());
            hasher.update(value.as_bytes());
        };
        field(self.stream.as_str());
        field(&self.amount.to_string());
        field(self.currency.as_str());
        field(self.donor_name.as_deref().unwrap_or("\u{0}"));
        field(if self.anonymous { "1" } else { "0" });
        field(self.message.as_deref().unwrap_or("\u{0}"));
        field(
            self.designation
                .as_ref()
                .map_or("\u{0}", DesignationCode::as_str),
        );
        field(self.donor_ref.as_deref().unwrap_or("\u{0}"));
        hex::encode(&hasher.finalize()[..16])
    }

    /// The name shown publicly: none for an anonymous pledge, whatever name it carries.
    pub fn public_name(&self) -> Option<&str> {
        public_name(self.anonymous, self.donor_name.as_deref())
    }
}

/// The name a gift shows in public: none when it is anonymous, whatever name it carries.
/// The one place that rule is written.
pub fn public_name(anonymous: bool, donor_name: Option<&str>) -> Option<&str> {
    if anonymous { None } else { donor_name }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> PledgeRules {
        PledgeRules {
            currency: Currency::CNY,
            min_amount: Money::from_stored(100),
            max_amount: Money::from_stored(10_000),
            designations: ["education".to_owned()].into_iter().collect(),
            status: CampaignStatus::Live,
        }
    }

    fn fields() -> PledgeFields {
        PledgeFields {
            amount: 500,
            currency: "CNY".into(),
            idempotency_key: "key-12345".into(),
            ..PledgeFields::default()
        }
    }

    fn stream() -> Slug {
        Slug::parse("stream", "live-01").expect("slug")
    }

    fn refusal(f: PledgeFields, r: &PledgeRules) -> &'static str {
        match Pledge::parse(stream(), &f, r) {
            Err(refusal) => refusal.code(),
            Ok(p) => panic!("accepted {p:?}"),
        }
    }

    #[test]
    fn accepts_a_plain_pledge() {
        let p = Pledge::parse(stream(), &fields(), &rules()).expect("valid");
        assert_eq!(p.amount, Money::from_stored(500));
        assert_eq!(p.designation, None);
    }

    #[test]
    fn each_refusal_has_its_code() {
        let r = rules();
        assert_eq!(
            refusal(
                PledgeFields {
                    amount: 99,
                    ..fields()
                },
                &r
            ),
            "amount_out_of_range"
        );
        assert_eq!(
            refusal(
                PledgeFields {
                    amount: 10_001,
                    ..fields()
                },
                &r
            ),
            "amount_out_of_range"
        );
        assert_eq!(
            refusal(
                PledgeFields {
                    amount: -1,
                    ..fields()
                },
                &r
            ),
            "amount_out_of_range"
        );
        assert_eq!(
            refusal(
                PledgeFields {
                    currency: "USD".into(),
                    ..fields()
                },
                &r
            ),
            "currency_mismatch"
        );
        assert_eq!(
            refusal(
                PledgeFields {
                    currency: "usd".into(),
                    ..fields()
                },
                &r
            ),
            "invalid_request"
        );
        let unknown = PledgeFields {
            designation: Some("sports".into()),
            ..fields()
        };
        assert_eq!(refusal(unknown, &r), "unknown_designation");
        let key = PledgeFields {
            idempotency_key: "short".into(),
            ..fields()
        };
        assert_eq!(refusal(key, &r), "invalid_request");
        let name = PledgeFields {
            donor_name: Some("名".repeat(33)),
            ..fields()
        };
        assert_eq!(refusal(name, &r), "invalid_request");
        let message = PledgeFields {
            message: Some("加".repeat(141)),
            ..fields()
        };
        assert_eq!(refusal(message, &r), "invalid_request");
        let closed = PledgeRules {
            status: CampaignStatus::Closed,
            ..rules()
        };
        assert_eq!(refusal(fields(), &closed), "campaign_closed");
        let ended = PledgeRules {
            status: CampaignStatus::Ended,
            ..rules()
        };
        assert_eq!(refusal(fields(), &ended), "campaign_not_live");
    }

    #[test]
    fn unicode_limits_count_characters() {
        let f = PledgeFields {
            donor_name: Some("名".repeat(32)),
            message: Some("加".repeat(140)),
            designation: Some("education".into()),
            ..fields()
        };
        assert!(Pledge::parse(stream(), &f, &rules()).is_ok());
    }

    #[test]
    fn anonymous_pledges_have_no_public_name() {
        let f = PledgeFields {
            donor_name: Some("小明".into()),
            anonymous: true,
            ..fields()
        };
        let p = Pledge::parse(stream(), &f, &rules()).expect("valid");
        assert_eq!(p.public_name(), None);
    }

    #[test]
    fn fingerprint_tells_bodies_apart() {
        let a = Pledge::parse(stream(), &fields(), &rules()).expect("valid");
        let b = Pledge::parse(
            stream(),
            &PledgeFields {
                amount: 501,
                ..fields()
            },
            &rules(),
        )
        .expect("valid");
        let c = Pledge::parse(stream(), &fields(), &rules()).expect("valid");
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.fingerprint(), c.fingerprint());
        let other_stream = Slug::parse("stream", "live-02").expect("slug");
        let d = Pledge::parse(other_stream, &fields(), &rules()).expect("valid");
        assert_ne!(a.fingerprint(), d.fingerprint());
    }
}
