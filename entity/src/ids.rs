//! Typed identifiers.
//!
//! Row ids are `BIGINT`s in the database and plain integers in the API; inside the services
//! they are distinct types, so an event id cannot be passed where a configuration id is
//! expected (the two sit side by side in attempt records, deliveries and the queue).

use std::fmt;

use sea_orm::DeriveValueType;
use serde::{Deserialize, Serialize};

/// Defines a row id: the `BIGINT` it stores as, serialized as the bare integer (so job payloads
/// and JSON parameters keep their shape), printed as the bare integer (messages and logs too).
macro_rules! row_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(
            Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
            DeriveValueType,
        )]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        /// The bare integer, as logs printed the id before it had a type.
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }
    };
}

row_id! {
    /// Id of a `webhook_events` row (inbound or outbound).
    EventId
}

row_id! {
    /// Id of a `webhook_configs` row.
    ConfigId
}

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
    fn row_ids_serialize_and_print_as_bare_integers() {
        assert_eq!(
            serde_json::to_string(&EventId(42)).ok().as_deref(),
            Some("42")
        );
        assert_eq!(
            serde_json::from_str::<ConfigId>("7").ok(),
            Some(ConfigId(7))
        );
        assert_eq!(format!("{} {:?}", EventId(3), [ConfigId(4)]), "3 [4]");
    }

    #[test]
    fn message_ids_are_prefixed_and_unique() {
        let (a, b) = (MessageId::generate(), MessageId::generate());
        assert!(a.as_str().starts_with("msg_"));
        assert_eq!(a.as_str().len(), 30);
        assert_ne!(a, b);
    }
}
