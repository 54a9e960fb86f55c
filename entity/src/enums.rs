//! Enums stored as text columns and exposed in the API.

use std::fmt;
use std::str::FromStr;

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// Defines an enum stored as a text column, shown in the API and written into SQL, with each
/// variant's text given once: the same string feeds serde, the OpenAPI document, sea-orm's
/// column value and [`as_str`](EventStatus::as_str), so no copy of it can drift from another.
macro_rules! text_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$variant_meta:meta])* $variant:ident => $text:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize,
            Deserialize,
        )]
        #[cfg_attr(feature = "openapi", derive(poem_openapi::Enum))]
        #[sea_orm(rs_type = "String", db_type = "Text")]
        pub enum $name {
            $(
                $(#[$variant_meta])*
                #[serde(rename = $text)]
                #[cfg_attr(feature = "openapi", oai(rename = $text))]
                #[sea_orm(string_value = $text)]
                $variant,
            )*
        }

        impl $name {
            /// The text stored in the column, shown in the API and written into SQL.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)*
                }
            }

            /// The text as an SQL string literal (`'text'`), for the few statements that need
            /// a literal rather than a bound parameter (a partial index's predicate only
            /// matches a literal). The texts are fixed and contain no quote.
            pub fn sql_literal(self) -> String {
                format!("'{}'", self.as_str())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum! {
    /// Whether an event came into wirehook or was sent out by it.
    pub enum Direction {
        Inbound => "inbound",
        Outbound => "outbound",
    }
}

text_enum! {
    /// Lifecycle of an event row.
    ///
    /// Inbound events end `processed`, `ignored` or `rejected`; outbound events move from
    /// `pending` to `delivered`, `failed` or `cancelled`.
    pub enum EventStatus {
        Processed => "processed",
        Ignored => "ignored",
        Rejected => "rejected",
        Pending => "pending",
        Delivered => "delivered",
        Failed => "failed",
        Cancelled => "cancelled",
    }
}

impl EventStatus {
    /// True for statuses that no delivery or scheduled retry will change again: everything but
    /// `pending` (only a manual retry moves a `failed` or `cancelled` event back). Retention
    /// deletes events in these statuses only.
    pub const fn is_final(self) -> bool {
        !matches!(self, Self::Pending)
    }
}

text_enum! {
    /// Status of an outbound webhook configuration.
    pub enum ConfigStatus {
        /// Receives deliveries.
        Active => "active",
        /// Paused by a user.
        Inactive => "inactive",
        /// Paused by the service (receiver gone or failing for too long).
        Disabled => "disabled",
    }
}

text_enum! {
    /// Where an event came from.
    pub enum Source {
        SignalWire => "signalwire",
        ElevenLabs => "elevenlabs",
        /// The 11Wire platform itself: outbound deliveries and platform events.
        Platform => "11wire",
    }
}

macro_rules! event_types {
    ($($variant:ident => $name:literal, $doc:literal;)*) => {
        /// The catalog of event types a configuration can subscribe to.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(poem_openapi::Enum))]
        pub enum EventType {
            $(
                #[doc = $doc]
                #[serde(rename = $name)]
                #[cfg_attr(feature = "openapi", oai(rename = $name))]
                $variant,
            )*
        }

        impl EventType {
            /// Every event type in the catalog, in contract order.
            pub const ALL: &'static [EventType] = &[$(EventType::$variant),*];

            /// The wire name, e.g. `call.completed`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(EventType::$variant => $name,)*
                }
            }
        }

        impl FromStr for EventType {
            type Err = UnknownEventType;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($name => Ok(EventType::$variant),)*
                    other => Err(UnknownEventType(other.to_owned())),
                }
            }
        }
    };
}

event_types! {
    CallCreated => "call.created", "A new call is created.";
    CallRinging => "call.ringing", "A call starts ringing.";
    CallAnswered => "call.answered", "A call is answered.";
    CallCompleted => "call.completed", "A call is completed.";
    RecordingStarted => "recording.started", "Call recording starts.";
    RecordingCompleted => "recording.completed", "Call recording completes.";
    VoiceProcessing => "voice.processing", "Voice processing starts.";
    VoiceCompleted => "voice.completed", "Voice processing completes.";
    AgentReady => "agent.ready", "An AI agent is ready.";
    AgentSpeaking => "agent.speaking", "An AI agent is speaking.";
    AgentListening => "agent.listening", "An AI agent is listening.";
    AgentError => "agent.error", "An AI agent encounters an error.";
    ConversationStarted => "conversation.started", "A conversation starts.";
    ConversationCompleted => "conversation.completed", "A conversation completes.";
    TransferInitiated => "transfer.initiated", "A call transfer is initiated.";
    TransferCompleted => "transfer.completed", "A call transfer completes.";
    ContactCreated => "contact.created", "A new contact is created.";
    CampaignStarted => "campaign.started", "A campaign starts.";
    CampaignCompleted => "campaign.completed", "A campaign completes.";
}

impl EventType {
    /// Who publishes this type, as the contract groups the catalog: SignalWire call events,
    /// ElevenLabs voice/agent events, or the platform itself.
    pub fn source(self) -> Source {
        use EventType::*;
        match self {
            CallCreated | CallRinging | CallAnswered | CallCompleted | RecordingStarted
            | RecordingCompleted => Source::SignalWire,
            VoiceProcessing | VoiceCompleted | AgentReady | AgentSpeaking | AgentListening
            | AgentError => Source::ElevenLabs,
            ConversationStarted
            | ConversationCompleted
            | TransferInitiated
            | TransferCompleted
            | ContactCreated
            | CampaignStarted
            | CampaignCompleted => Source::Platform,
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not in the event type catalog.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown event type `{0}`")]
pub struct UnknownEventType(pub String);

#[cfg(test)]
mod tests {
    #[test]
    fn the_catalog_groups_into_six_signalwire_six_elevenlabs_and_seven_platform_types() {
        let count = |source| {
            EventType::ALL
                .iter()
                .filter(|t| t.source() == source)
                .count()
        };
        assert_eq!(count(Source::SignalWire), 6);
        assert_eq!(count(Source::ElevenLabs), 6);
        assert_eq!(count(Source::Platform), 7);
        assert_eq!(EventType::CallCompleted.source(), Source::SignalWire);
        assert_eq!(EventType::AgentError.source(), Source::ElevenLabs);
        assert_eq!(EventType::CampaignStarted.source(), Source::Platform);
    }

    use super::*;

    #[test]
    fn catalog_has_the_nineteen_contract_types() {
        assert_eq!(EventType::ALL.len(), 19);
    }

    #[test]
    fn event_type_names_round_trip() {
        for t in EventType::ALL {
            assert_eq!(t.as_str().parse::<EventType>(), Ok(*t));
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
        }
    }

    #[test]
    fn unknown_event_type_is_an_error() {
        assert!("call.exploded".parse::<EventType>().is_err());
    }

    use sea_orm::Iterable;

    /// The one text of each variant is what sea-orm stores, serde shows and SQL is built from.
    fn texts_agree<E>()
    where
        E: ActiveEnum<Value = String> + Iterable + Serialize + Copy + fmt::Display,
    {
        for v in E::iter() {
            let text = v.to_string();
            assert_eq!(v.to_value(), text);
            assert_eq!(serde_json::to_value(v).ok(), Some(text.clone().into()));
            assert_eq!(
                E::try_from_value(&text).ok().map(|e| e.to_value()),
                Some(text.clone())
            );
            assert!(
                !text.contains('\''),
                "`{text}` cannot be an SQL literal as is"
            );
        }
    }

    #[test]
    fn every_text_enum_stores_shows_and_writes_the_same_text() {
        texts_agree::<Direction>();
        texts_agree::<EventStatus>();
        texts_agree::<ConfigStatus>();
        texts_agree::<Source>();
        assert_eq!(EventStatus::Cancelled.as_str(), "cancelled");
        assert_eq!(ConfigStatus::Active.sql_literal(), "'active'");
        assert_eq!(Source::Platform.as_str(), "11wire");
    }

    #[test]
    fn an_unknown_stored_text_is_an_error_not_a_default() {
        assert!(EventStatus::try_from_value(&"canceled".to_owned()).is_err());
        assert!(ConfigStatus::try_from_value(&"paused".to_owned()).is_err());
        assert!(Direction::try_from_value(&"sideways".to_owned()).is_err());
        assert!(Source::try_from_value(&"twilio".to_owned()).is_err());
    }

    #[test]
    fn only_pending_is_not_final() {
        let open: Vec<EventStatus> = EventStatus::iter().filter(|s| !s.is_final()).collect();
        assert_eq!(open, [EventStatus::Pending]);
    }
}
