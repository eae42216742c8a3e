//! Proxy-wasm shared data, as the revocation cache and the feed's state use it.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedSetError {
    /// Another worker wrote the key since we read it.
    CasMismatch,
    Failed,
}

/// Proxy-wasm shared data: a key-value store common to all VMs of one `vm_id`, with
/// compare-and-swap.
pub trait SharedData {
    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>);
    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SharedSetError>;
}

