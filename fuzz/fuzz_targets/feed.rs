//! The revocation feed's answers (`parse_answer`), from keyservice over the network, after any
//! cursor. Properties:
//! - never a panic; an accepted answer's seqs are after the cursor asked about, strictly
//!   increasing, and at most `next`; a resync carries no event; at most 1,000 events;
//! - without a resync, `next` never goes back from the cursor asked about;
//! - each digest is the 64 lowercase hex digits the answer had: written back, it is that text;
//! - parsing is deterministic.
#![no_main]

use keygate::revocation::feed::parse_answer;
use libfuzzer_sys::fuzz_target;

// The input is the answer, optionally after a line with the cursor asked about (`41\n{...}`).
fuzz_target!(|data: &[u8]| {
    let (asked, body) = match data.iter().position(|&b| b == b'\n') {
        Some(end) if end > 0 && data[..end].iter().all(u8::is_ascii_digit) => (
            std::str::from_utf8(&data[..end])
                .ok()
                .and_then(|n| n.parse().ok()),
            &data[end + 1..],
        ),
        _ => (None, data),
    };
    let first = parse_answer(body, asked);
    assert_eq!(first, parse_answer(body, asked), "deterministic");
    let Ok(answer) = first else {
        return;
    };
    assert!(answer.events.len() <= 1000);
    if answer.resync {
        assert!(answer.events.is_empty());
    } else if let Some(asked) = asked {
        assert!(answer.next >= asked);
    }
    let mut last = asked;
    for event in &answer.events {
        assert!(last.is_none_or(|last| event.seq > last));
        assert!(event.seq <= answer.next);
        last = Some(event.seq);
        let hex: String = event
            .digest
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        let json: serde_json::Value = serde_json::from_slice(body).expect("accepted, so JSON");
        let written = json["events"]
            .as_array()
            .and_then(|all| all.iter().find(|r| r["seq"] == event.seq))
            .and_then(|r| r["sha256"].as_str());
        assert_eq!(written, Some(hex.as_str()), "the digest is the one written");
    }
});
