//! Typed identifiers.

use std::fmt;

/// Public message id of an event (`msg_` + ULID): stable across retries, sent as `webhook-id`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MessageId(String);

impl MessageId {
    /// A new, unique, time-ordered message id.
    pub fn generate() -> Self {
        Self(format!("msg_{}", ulid::Ulid::generate()))
    }

    /// The id as sent on the wire.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id as stored.
    pub fn into_inner(self) -> String {
        self.0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_are_prefixed_and_unique() {
        let (a, b) = (MessageId::generate(), MessageId::generate());
        assert!(a.as_str().starts_with("msg_"));
        assert_eq!(a.as_str().len(), 30);
        assert_ne!(a, b);
    }
}
