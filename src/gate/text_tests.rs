//! Unit tests of `text`.

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
