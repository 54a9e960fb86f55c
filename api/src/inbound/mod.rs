//! Pure building blocks of the inbound provider webhooks: signature checks, client IP and
//! normalization of provider bodies into platform events. Nothing here does I/O.

pub mod client_ip;
pub mod elevenlabs;
pub mod normalize;
pub mod signalwire;

pub use client_ip::{CidrList, CidrListError, ELEVENLABS_EGRESS_IPS, client_ip};
pub use normalize::{NormalizeError, Normalized};
pub use signalwire::SignalWireSignature;

/// Why an inbound request's signature was refused.
///
/// Every message is safe to return to the caller: none contains a key, a signature or the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The request carries no signature header.
    #[error("the request has no signature header")]
    Missing,
    /// The signature header is present but cannot be read.
    #[error("the signature header is malformed")]
    Malformed,
    /// The signature does not match the request.
    #[error("the signature does not match the request")]
    Mismatch,
    /// The body does not hash to the `bodySHA256` query parameter that was signed.
    #[error("the body does not match the signed bodySHA256")]
    BodyHashMismatch,
    /// The signed timestamp is older than the accepted window.
    #[error("the signature timestamp is too old")]
    Stale,
    /// The signed timestamp is further in the future than clock skew explains.
    #[error("the signature timestamp is in the future")]
    FromTheFuture,
}

/// True when the `Content-Type` is `application/x-www-form-urlencoded` (parameters ignored).
pub fn is_form_encoded(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|value| value.split(';').next())
        .is_some_and(|media_type| {
            media_type
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}
