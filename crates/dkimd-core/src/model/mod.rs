//! What dkimd is about, without I/O: names, settings and the signing rules,
//! and private keys.

pub mod keyfile;
pub mod names;
pub mod period;
pub mod settings;

/// `s` cut to at most `max` characters, with "…" when it was longer.
pub fn cut(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", s.get(..i).unwrap_or_default()),
        None => s.to_string(),
    }
}
