//! Lengths of time in settings: `30d`, `12h`, `90m`, `45s`, or a mix such
//! as `1d 12h`, parsed by jiff's friendly duration format; a day is 24
//! hours.

use std::fmt;

/// A length of time, in whole seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Period(u64);

impl Period {
    /// A period of `secs` seconds.
    pub const fn seconds(secs: u64) -> Period {
        Period(secs)
    }

    /// A period of `n` days.
    pub const fn days(n: u64) -> Period {
        Period(n * 86_400)
    }

    /// Its length in seconds.
    pub fn as_secs(self) -> u64 {
        self.0
    }

    /// Its length in seconds, for adding to epoch times.
    pub fn as_i64(self) -> i64 {
        i64::try_from(self.0).unwrap_or(i64::MAX)
    }
}

impl std::str::FromStr for Period {
    type Err = String;
    fn from_str(s: &str) -> Result<Period, String> {
        let t = s.trim();
        let bad =
            || format!("{t:?} is not a length of time: write e.g. 30d, 12h, 90m, 45s or 1d 12h");
        if t.is_empty() || t.starts_with('-') || t.starts_with('P') || t.starts_with('p') {
            return Err(bad());
        }
        let span: jiff::Span = t.parse().map_err(|_| bad())?;
        let secs = span
            .total((
                jiff::Unit::Second,
                jiff::SpanRelativeTo::days_are_24_hours(),
            ))
            .map_err(|_| bad())?;
        if !(1.0..=1e10).contains(&secs) || secs.fract() != 0.0 {
            return Err(format!(
                "{t:?}: a length of time is whole seconds, at least 1s and at most about 300 years"
            ));
        }
        // Checked above: a whole number between 1 and 1e10.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Ok(Period(secs as u64))
    }
}

impl fmt::Display for Period {
    /// The shortest exact form: `30d`, `12h`, `1d 12h`, `90s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut left = self.0;
        let mut parts = Vec::new();
        for (unit, len) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
            let n = left / len;
            if n > 0 {
                parts.push(format!("{n}{unit}"));
                left -= n * len;
            }
        }
        if parts.is_empty() {
            parts.push("0s".into());
        }
        f.write_str(&parts.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_shows_lengths_of_time() {
        for (text, secs, shown) in [
            ("30d", 30 * 86_400, "30d"),
            ("12h", 12 * 3_600, "12h"),
            ("1d 12h", 129_600, "1d 12h"),
            ("90m", 5_400, "1h 30m"),
            ("45s", 45, "45s"),
            ("180 days", 180 * 86_400, "180d"),
        ] {
            let p: Period = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(p.as_secs(), secs, "{text}");
            assert_eq!(p.to_string(), shown, "{text}");
            assert_eq!(shown.parse::<Period>().unwrap(), p);
        }
        for bad in ["", "0s", "-1d", "soon", "7", "P1D", "1.5s"] {
            assert!(bad.parse::<Period>().is_err(), "{bad:?} was accepted");
        }
    }
}
