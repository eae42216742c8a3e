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
mod tests {
    use super::*;

    #[test]
    fn identities_are_visible_ascii() {
        for good in [
            "user_2abc",
            "org_1",
            "alice@example.com",
            "a",
            &"x".repeat(256),
        ] {
            assert!(is_identity(good), "{good:?}");
        }
        for bad in [
            "",
            &"x".repeat(257),
            " alice",
            "alice ",
            "al ice",
            "al\tice",
            "alicé",
            "al\u{202e}ice",
            "al\u{200b}ice",
            "\u{feff}alice",
            "al\u{0}ice",
            "al\u{7f}ice",
        ] {
            assert!(!is_identity(bad), "{bad:?}");
        }
    }

    #[test]
    fn invisible_characters_are_the_ones_not_drawn() {
        for c in [
            '\u{0}',
            '\n',
            '\u{7f}',
            '\u{85}',
            '\u{ad}',
            '\u{200b}',
            '\u{200d}',
            '\u{200e}',
            '\u{2028}',
            '\u{2029}',
            '\u{202a}',
            '\u{202e}',
            '\u{2060}',
            '\u{2066}',
            '\u{2069}',
            '\u{3164}',
            '\u{fe0f}',
            '\u{feff}',
            '\u{ffa0}',
            '\u{fff9}',
            '\u{e0001}',
            '\u{e007f}',
        ] {
            assert!(is_invisible(c), "{:x}", u32::from(c));
        }
        for c in [
            'a', ' ', '~', 'é', 'ß', '中', '\u{a0}', '\u{3000}', '😀', '\u{fffd}',
        ] {
            assert!(!is_invisible(c), "{:x}", u32::from(c));
        }
    }

    /// Every character the standard library calls a control, and every Cf character of
    /// Unicode 16.0, is invisible (the Cf list here is the one published in
    /// DerivedGeneralCategory.txt).
    #[test]
    fn every_format_character_is_invisible() {
        const FORMAT: &[(u32, u32)] = &[
            (0x00AD, 0x00AD),
            (0x0600, 0x0605),
            (0x061C, 0x061C),
            (0x06DD, 0x06DD),
            (0x070F, 0x070F),
            (0x0890, 0x0891),
            (0x08E2, 0x08E2),
            (0x180E, 0x180E),
            (0x200B, 0x200F),
            (0x202A, 0x202E),
            (0x2060, 0x2064),
            (0x2066, 0x206F),
            (0xFEFF, 0xFEFF),
            (0xFFF9, 0xFFFB),
            (0x110BD, 0x110BD),
            (0x110CD, 0x110CD),
            (0x13430, 0x1343F),
            (0x1BCA0, 0x1BCA3),
            (0x1D173, 0x1D17A),
            (0xE0001, 0xE0001),
            (0xE0020, 0xE007F),
        ];
        for &(first, last) in FORMAT {
            for code in first..=last {
                let c = char::from_u32(code).unwrap();
                assert!(is_invisible(c), "{code:x}");
            }
        }
        for code in 0..=0x10FFFF {
            if let Some(c) = char::from_u32(code)
                && c.is_control()
            {
                assert!(is_invisible(c), "{code:x}");
            }
        }
    }

    #[test]
    fn escaping_shows_what_was_sent_on_one_line() {
        assert_eq!(Escaped("alice").to_string(), "alice");
        assert_eq!(Escaped("naïve 中").to_string(), "naïve 中");
        assert_eq!(
            Escaped("a\u{202e}b\nc\\u{a}").to_string(),
            "a\\u{202e}b\\u{a}c\\\\u{a}"
        );
        assert_eq!(Escaped("\u{feff}").to_string(), "\\u{feff}");
    }
}
