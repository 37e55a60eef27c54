//! Exact decimal prices: the text of a price, in currency units per million tokens,
//! to the kernel's microunits per million tokens, with integer arithmetic only.

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// The longest price text accepted, in bytes.
pub const MAX_PRICE_TEXT_BYTES: usize = 64;

/// Decimal places a price may carry (one microunit is 10^-6 of a unit): more are
/// accepted only when they are zeros.
pub const PRICE_DECIMALS: usize = 6;

/// A price as written in a policy file: its decimal text. A string is kept as written;
/// an integer as its digits; a floating-point number as the shortest decimal text that
/// reads back as the same number (so `0.15` stays `0.15`). Write prices as strings to
/// be sure of every digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Price(pub String);

impl Price {
    /// The price in microunits per million tokens.
    ///
    /// # Errors
    /// [`PriceError`] when the text is not a plain non-negative decimal, has non-zero
    /// digits past the sixth decimal place, or does not fit a `u64`.
    pub fn microunits(&self) -> Result<u64, PriceError> {
        decimal_to_microunits(&self.0)
    }
}

impl From<&str> for Price {
    fn from(text: &str) -> Self {
        Self(text.to_owned())
    }
}

impl core::fmt::Display for Price {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a price text does not convert exactly to microunits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PriceError {
    /// Not of the form `DIGITS` or `DIGITS.DIGITS` (no sign, exponent, spaces or
    /// separators), or longer than [`MAX_PRICE_TEXT_BYTES`].
    #[error("not a plain non-negative decimal such as \"0.15\"")]
    NotADecimal,
    /// A negative price.
    #[error("negative")]
    Negative,
    /// A non-zero digit past the sixth decimal place: not a whole number of
    /// microunits.
    #[error("more than 6 decimal places: not a whole number of microunits")]
    TooPrecise,
    /// More than `u64::MAX` microunits.
    #[error("too large: more than {} microunits", u64::MAX)]
    Overflow,
}

/// `text` (a plain decimal in units) times 10^6, exactly.
///
/// # Errors
/// See [`PriceError`].
pub fn decimal_to_microunits(text: &str) -> Result<u64, PriceError> {
    if text.len() > MAX_PRICE_TEXT_BYTES {
        return Err(PriceError::NotADecimal);
    }
    if let Some(rest) = text.strip_prefix('-') {
        // "-0" and "-0.0" are zero; anything else below zero is refused as negative.
        return match decimal_to_microunits(rest) {
            Ok(0) => Ok(0),
            Ok(_) => Err(PriceError::Negative),
            Err(error) => Err(error),
        };
    }
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (text, None),
    };
    let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || fraction.is_some_and(|f| !digits(f)) {
        return Err(PriceError::NotADecimal);
    }
    let mut units: u64 = 0;
    for b in whole.bytes() {
        units = units
            .checked_mul(10)
            .and_then(|u| u.checked_add(u64::from(b - b'0')))
            .ok_or(PriceError::Overflow)?;
    }
    let mut micro: u64 = 0;
    let fraction = fraction.unwrap_or("").as_bytes();
    for place in 0..PRICE_DECIMALS {
        let digit = fraction.get(place).map_or(0, |b| u64::from(b - b'0'));
        micro = micro * 10 + digit;
    }
    if fraction.iter().skip(PRICE_DECIMALS).any(|b| *b != b'0') {
        return Err(PriceError::TooPrecise);
    }
    units
        .checked_mul(1_000_000)
        .and_then(|u| u.checked_add(micro))
        .ok_or(PriceError::Overflow)
}

/// The plain decimal text of a microunit amount in units: `150000` is `"0.15"`.
#[must_use]
pub fn microunits_to_decimal(microunits: u64) -> String {
    let whole = microunits / 1_000_000;
    let fraction = microunits % 1_000_000;
    if fraction == 0 {
        return whole.to_string();
    }
    let digits = format!("{fraction:06}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

impl Serialize for Price {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

struct PriceVisitor;

impl Visitor<'_> for PriceVisitor {
    type Value = Price;

    fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("a price: a decimal string such as \"0.15\", or a number")
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Price, E> {
        if value.len() > MAX_PRICE_TEXT_BYTES {
            return Err(E::custom(format_args!(
                "a price of more than {MAX_PRICE_TEXT_BYTES} bytes"
            )));
        }
        Ok(Price(value.to_owned()))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Price, E> {
        Ok(Price(value.to_string()))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Price, E> {
        Ok(Price(value.to_string()))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Price, E> {
        if !value.is_finite() {
            return Err(E::custom("a price must be a finite number"));
        }
        // Rust prints the shortest decimal that reads back as the same f64, without
        // an exponent: 1.5e-7 prints as 0.00000015.
        let text = format!("{value}");
        if text.len() > MAX_PRICE_TEXT_BYTES {
            return Err(E::custom(
                "a price number too large or too long; write it as a string",
            ));
        }
        Ok(Price(text))
    }
}

impl<'de> Deserialize<'de> for Price {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(PriceVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_decimals_convert_exactly() {
        for (text, micro) in [
            ("0.15", 150_000),
            ("5", 5_000_000),
            ("0.000001", 1),
            ("0.0000010000", 1),
            ("0", 0),
            ("-0", 0),
            ("18446744073709.551615", u64::MAX),
            ("2.50", 2_500_000),
        ] {
            assert_eq!(decimal_to_microunits(text), Ok(micro), "{text}");
        }
    }

    #[test]
    fn everything_else_is_refused_with_its_reason() {
        for (text, error) in [
            ("0.0000001", PriceError::TooPrecise),
            ("18446744073709.551616", PriceError::Overflow),
            ("99999999999999999999", PriceError::Overflow),
            ("-1", PriceError::Negative),
            ("", PriceError::NotADecimal),
            (".5", PriceError::NotADecimal),
            ("5.", PriceError::NotADecimal),
            ("1e-7", PriceError::NotADecimal),
            ("+1", PriceError::NotADecimal),
            ("1 000", PriceError::NotADecimal),
            ("1,5", PriceError::NotADecimal),
            ("0x10", PriceError::NotADecimal),
            ("١", PriceError::NotADecimal),
        ] {
            assert_eq!(decimal_to_microunits(text), Err(error), "{text:?}");
        }
    }

    #[test]
    fn microunits_print_back_as_the_shortest_decimal() {
        assert_eq!(microunits_to_decimal(150_000), "0.15");
        assert_eq!(microunits_to_decimal(5_000_000), "5");
        assert_eq!(microunits_to_decimal(1), "0.000001");
        assert_eq!(microunits_to_decimal(u64::MAX), "18446744073709.551615");
    }

    #[test]
    fn a_float_is_read_as_its_shortest_decimal() {
        let price: Price = serde_json::from_str("1.5e-7").expect("a number");
        assert_eq!(price.0, "0.00000015");
        assert_eq!(price.microunits(), Err(PriceError::TooPrecise));
        let price: Price = serde_json::from_str("0.15").expect("a number");
        assert_eq!(price.microunits(), Ok(150_000));
    }
}
