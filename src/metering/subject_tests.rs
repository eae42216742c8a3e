use super::*;

#[test]
fn counter_ids_separate_their_parts() {
    assert_ne!(counter_id(&[b"ab", b"c"]), counter_id(&[b"a", b"bc"]));
    assert_eq!(counter_id(&[b"key", b"p"]), counter_id(&[b"key", b"p"]));
    assert_ne!(counter_id(&[b"key", b"p"]), counter_id(&[b"key", b"q"]));
}
