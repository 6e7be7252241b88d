//! Money as integer minor units and ISO-4217 currency codes; never floats.

use serde::{Deserialize, Serialize};
use std::fmt;

use super::Invalid;

/// An amount in minor units (fen for CNY). Totals may be zero; amounts a client
/// hands in are built with [`Money::positive`].
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Money(i64);

impl Money {
    pub const ZERO: Money = Money(0);

    /// Largest amount accepted anywhere: ¥10 billion in fen, far above any gift, and
    /// small enough that sums of millions of them stay within `i64`.
    pub const MAX: Money = Money(1_000_000_000_000);

    /// A strictly positive amount no larger than [`Money::MAX`].
    pub fn positive(field: &str, minor_units: i64) -> Result<Money, Invalid> {
        if minor_units <= 0 {
            return Err(Invalid::new(
                field,
                "must be a positive integer of minor units",
            ));
        }
        if minor_units > Self::MAX.0 {
            return Err(Invalid::new(
                field,
                format!("must be at most {} minor units", Self::MAX.0),
            ));
        }
        Ok(Money(minor_units))
    }

    /// Wraps a value read from trusted storage (the ledger or the live counters).
    pub const fn from_stored(minor_units: i64) -> Money {
        Money(minor_units)
    }

    pub const fn minor_units(self) -> i64 {
        self.0
    }
}

impl From<i64> for Money {
    /// A value read from trusted storage, like [`Money::from_stored`].
    fn from(minor_units: i64) -> Money {
        Money(minor_units)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// An ISO-4217 code: three upper-case ASCII letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency([u8; 3]);

impl Currency {
    pub const CNY: Currency = Currency(*b"CNY");

    pub fn parse(field: &str, code: &str) -> Result<Currency, Invalid> {
        match code.as_bytes() {
            [a, b, c] if [a, b, c].iter().all(|b| b.is_ascii_uppercase()) => {
                Ok(Currency([*a, *b, *c]))
            }
            _ => Err(Invalid::new(
                field,
                "must be an ISO-4217 code of three upper-case letters, like CNY",
            )),
        }
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("a currency holds only ASCII letters")
    }
}

impl TryFrom<String> for Currency {
    type Error = Invalid;

    fn try_from(code: String) -> Result<Currency, Invalid> {
        Currency::parse("currency", &code)
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn positive_refuses_zero_negative_and_huge() {
        assert!(Money::positive("amount", 0).is_err());
        assert!(Money::positive("amount", -1).is_err());
        assert!(Money::positive("amount", Money::MAX.minor_units() + 1).is_err());
        assert_eq!(Money::positive("amount", 1).map(Money::minor_units), Ok(1));
    }

    #[test]
    fn currency_is_three_upper_case_letters() {
        assert_eq!(Currency::parse("currency", "CNY"), Ok(Currency::CNY));
        for bad in ["cny", "CN", "CNYY", "C1Y", "", "人民币"] {
            assert!(Currency::parse("currency", bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn positive_accepts_exactly_the_range(v in any::<i64>()) {
            let ok = v > 0 && v <= Money::MAX.minor_units();
            prop_assert_eq!(Money::positive("amount", v).is_ok(), ok);
        }

        #[test]
        fn currency_round_trips(code in "[A-Z]{3}") {
            let parsed = Currency::parse("currency", &code).expect("valid code");
            prop_assert_eq!(parsed.as_str(), code.as_str());
        }
    }
}
