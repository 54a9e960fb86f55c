//! Enums stored as text columns and exposed in the API.

use std::fmt;
use std::str::FromStr;

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// Whether an event came into wirehook or was sent out by it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Enum))]
#[cfg_attr(feature = "openapi", oai(rename_all = "lowercase"))]
#[serde(rename_all = "lowercase")]
#[sea_orm(rs_type = "String", db_type = "Text")]
pub enum Direction {
    #[sea_orm(string_value = "inbound")]
    Inbound,
    #[sea_orm(string_value = "outbound")]
    Outbound,
}

/// Lifecycle of an event row.
///
/// Inbound events end `processed`, `ignored` or `rejected`; outbound events move from
/// `pending` to `delivered`, `failed` or `cancelled`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Enum))]
#[cfg_attr(feature = "openapi", oai(rename_all = "lowercase"))]
#[serde(rename_all = "lowercase")]
#[sea_orm(rs_type = "String", db_type = "Text")]
pub enum EventStatus {
    #[sea_orm(string_value = "processed")]
    Processed,
    #[sea_orm(string_value = "ignored")]
    Ignored,
    #[sea_orm(string_value = "rejected")]
    Rejected,
    #[sea_orm(string_value = "pending")]
    Pending,
    #[sea_orm(string_value = "delivered")]
    Delivered,
    #[sea_orm(string_value = "failed")]
    Failed,
    #[sea_orm(string_value = "cancelled")]
    Cancelled,
}

impl EventStatus {
    /// True for statuses that no further work will change.
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Pending)
    }
}

/// Status of an outbound webhook configuration.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Enum))]
#[cfg_attr(feature = "openapi", oai(rename_all = "lowercase"))]
#[serde(rename_all = "lowercase")]
#[sea_orm(rs_type = "String", db_type = "Text")]
pub enum ConfigStatus {
    /// Receives deliveries.
    #[sea_orm(string_value = "active")]
    Active,
    /// Paused by a user.
    #[sea_orm(string_value = "inactive")]
    Inactive,
    /// Paused by the service (receiver gone or failing for too long).
    #[sea_orm(string_value = "disabled")]
    Disabled,
}

/// Where an event came from.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Enum))]
#[sea_orm(rs_type = "String", db_type = "Text")]
pub enum Source {
    #[serde(rename = "signalwire")]
    #[cfg_attr(feature = "openapi", oai(rename = "signalwire"))]
    #[sea_orm(string_value = "signalwire")]
    SignalWire,
    #[serde(rename = "elevenlabs")]
    #[cfg_attr(feature = "openapi", oai(rename = "elevenlabs"))]
    #[sea_orm(string_value = "elevenlabs")]
    ElevenLabs,
    /// The 11Wire platform itself: outbound deliveries and platform events.
    #[serde(rename = "11wire")]
    #[cfg_attr(feature = "openapi", oai(rename = "11wire"))]
    #[sea_orm(string_value = "11wire")]
    Platform,
}

impl Source {
    /// The name stored and shown: `signalwire`, `elevenlabs` or `11wire`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SignalWire => "signalwire",
            Self::ElevenLabs => "elevenlabs",
            Self::Platform => "11wire",
        }
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
}
