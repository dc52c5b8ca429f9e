//! Reading ε and α the way papers write them: `8/255`, `0.031`, `2/255`.

use crate::error::{invalid, Result};

/// Parses a non-negative number written as a decimal or a fraction `a/b`.
///
/// ```
/// use dwlth_adv::parse_fraction;
/// assert!((parse_fraction("8/255").unwrap() - 8.0 / 255.0).abs() < 1e-12);
/// assert_eq!(parse_fraction("0.5").unwrap(), 0.5);
/// assert!(parse_fraction("-1").is_err());
/// assert!(parse_fraction("1/0").is_err());
/// ```
pub fn parse_fraction(text: &str) -> Result<f64> {
    let bad = |why: &str| invalid("number", text, why);
    let value = match text.trim().split_once('/') {
        Some((a, b)) => {
            let a: f64 = a.trim().parse().map_err(|_| bad("not a number"))?;
            let b: f64 = b.trim().parse().map_err(|_| bad("not a number"))?;
            if b == 0.0 {
                return Err(bad("division by zero"));
            }
            a / b
        }
        None => text.trim().parse().map_err(|_| bad("not a number"))?,
    };
    if !value.is_finite() || value < 0.0 {
        return Err(bad("must be a finite, non-negative number"));
    }
    Ok(value)
}
