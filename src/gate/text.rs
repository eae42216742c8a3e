//! The characters an identity and a label may hold, shared by the filter (claims it forwards)
//! and keyservice (what it issues, imports, takes from the edge, logs and prints).
//!
//! Two rules, one narrower than the other:
//! - **Identities** (`user_id`, `org_id`) are 1 to [`MAX_IDENTITY_BYTES`] visible ASCII
//!   characters (`!` to `~`): what a header carries unchanged, a log shows as it is, and no two
//!   of which look alike.
//! - **Text** (a key's name; any claim the filter forwards) may be any Unicode but no
//!   [invisible](is_invisible) character: none that is not drawn (controls, formats such as
//!   zero-width and bidirectional ones, the byte-order mark, default-ignorable code points) or
//!   that breaks a line (U+2028, U+2029). Those make two values look the same, reorder what a
//!   log or a table shows, or forge log fields.

use std::fmt;

/// Longest identity, in bytes (all ASCII, so characters too).
pub const MAX_IDENTITY_BYTES: usize = 256;

/// Whether `value` is an identity: 1 to [`MAX_IDENTITY_BYTES`] characters from `!` to `~`.
pub fn is_identity(value: &str) -> bool {
    (1..=MAX_IDENTITY_BYTES).contains(&value.len())
        && value.bytes().all(|byte| byte.is_ascii_graphic())
}

/// Whether `c` is not drawn, or changes how what follows it is drawn: a control (Cc), a format
/// character (Cf), a line or paragraph separator (Zl, Zp), or a default-ignorable code point
/// (Unicode 16.0, `DerivedCoreProperties.txt` and `DerivedGeneralCategory.txt`).
pub fn is_invisible(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_control();
    }
    c.is_control()
        || INVISIBLE
            .iter()
            .any(|&(first, last)| (first..=last).contains(&c))
}

/// Cf, Zl, Zp and Default_Ignorable_Code_Point above U+007F, merged into ranges.
const INVISIBLE: &[(char, char)] = &[
    ('\u{00AD}', '\u{00AD}'),   // soft hyphen
    ('\u{034F}', '\u{034F}'),   // combining grapheme joiner
    ('\u{0600}', '\u{0605}'),   // Arabic number signs
    ('\u{061C}', '\u{061C}'),   // Arabic letter mark
    ('\u{06DD}', '\u{06DD}'),   // Arabic end of ayah
    ('\u{070F}', '\u{070F}'),   // Syriac abbreviation mark
    ('\u{0890}', '\u{0891}'),   // Arabic pound and piastre marks above
    ('\u{08E2}', '\u{08E2}'),   // Arabic disputed end of ayah
    ('\u{115F}', '\u{1160}'),   // Hangul fillers
    ('\u{17B4}', '\u{17B5}'),   // Khmer inherent vowels
    ('\u{180B}', '\u{180F}'),   // Mongolian variation selectors and vowel separator
    ('\u{200B}', '\u{200F}'),   // zero-width space, joiners, LRM, RLM
    ('\u{2028}', '\u{202E}'),   // line and paragraph separators, bidi embeddings/overrides
    ('\u{2060}', '\u{206F}'),   // word joiner, invisible operators, bidi isolates, …
    ('\u{3164}', '\u{3164}'),   // Hangul filler
    ('\u{FE00}', '\u{FE0F}'),   // variation selectors
    ('\u{FEFF}', '\u{FEFF}'),   // byte-order mark, zero-width no-break space
    ('\u{FFA0}', '\u{FFA0}'),   // halfwidth Hangul filler
    ('\u{FFF0}', '\u{FFFB}'),   // unassigned specials, interlinear annotations
    ('\u{110BD}', '\u{110BD}'), // Kaithi number sign
    ('\u{110CD}', '\u{110CD}'), // Kaithi number sign above
    ('\u{13430}', '\u{1343F}'), // Egyptian hieroglyph format controls
    ('\u{1BCA0}', '\u{1BCA3}'), // shorthand format controls
    ('\u{1D173}', '\u{1D17A}'), // musical symbol format controls
    ('\u{E0000}', '\u{E0FFF}'), // tags, variation selectors supplement
];

/// `value` for a log line or a table cell: as it is, except that invisible characters and `\`
/// are written as Rust escapes (`\u{202e}`, `\\`), so what is shown is what was sent and no
/// value can end a line or reorder the ones after it.
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            if c == '\\' {
                f.write_str("\\\\")?;
            } else if is_invisible(c) {
                write!(f, "\\u{{{:x}}}", u32::from(c))?;
            } else {
                fmt::Write::write_char(f, c)?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
#[path = "text_tests.rs"]
mod tests;
