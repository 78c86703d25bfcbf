//! Limits one order must respect.
//!
//! The Order API enforces them at the door (422) and validation enforces them
//! again (rejection), because records on `orders.created` may also come from
//! other producers, replays or older versions of the API.

use rust_decimal::Decimal;

/// Most lines one order may have.
pub const MAX_ITEMS: usize = 100;

/// Most units one line may order.
pub const MAX_QUANTITY: i32 = 10_000;

/// Longest customer or product id, in characters.
pub const MAX_ID_CHARS: usize = 64;

/// Longest shipping address, in characters.
pub const MAX_ADDRESS_CHARS: usize = 500;

/// Most decimal places of a price or total: the scale of `decimal(10,2)`.
pub const PRICE_SCALE: u32 = 2;

/// The first amount that no longer fits `decimal(10,2)`: 10^8.
pub fn amount_bound() -> Decimal {
    Decimal::from(100_000_000u32)
}

/// Why a text field is not acceptable, if it is not.
pub fn check_text(value: &str, max_chars: usize) -> Result<(), String> {
    if value.trim().is_empty() {
        return Err("must not be empty".into());
    }
    if value.chars().count() > max_chars {
        return Err(format!("must be at most {max_chars} characters"));
    }
    if value.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(())
}

/// Whether an amount fits `decimal(10,2)`: not negative, below 10^8, at most
/// two decimal places.
pub fn fits_amount(value: Decimal) -> bool {
    !value.is_sign_negative() && value < amount_bound() && value.normalize().scale() <= PRICE_SCALE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_must_be_non_empty_bounded_and_printable() {
        assert!(check_text("c-1", 3).is_ok());
        assert!(check_text("  ", 3).is_err());
        assert!(check_text("c-12", 3).is_err());
        assert!(check_text("a\u{0}b", 3).is_err());
        // Characters, not bytes: "é" is two bytes.
        assert!(check_text("ééé", 3).is_ok());
    }

    #[test]
    fn amounts_fit_decimal_10_2() {
        let d = |s: &str| s.parse::<Decimal>().unwrap();
        assert!(fits_amount(d("0")));
        assert!(fits_amount(d("99999999.99")));
        assert!(fits_amount(d("19.990")));
        assert!(!fits_amount(d("100000000")));
        assert!(!fits_amount(d("19.999")));
        assert!(!fits_amount(d("-0.01")));
    }
}
