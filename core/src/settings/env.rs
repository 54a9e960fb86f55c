//! The one way both binaries read a variable: trimmed, an empty value counts as unset, and a
//! refusal names the variable.

use std::fmt::Display;
use std::str::FromStr;

/// A setting that is missing or malformed; printed as one line before the binary exits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// A required variable is unset or empty.
    #[error("{0} is not set")]
    Missing(&'static str),
    /// A variable is set to a value the binary cannot use.
    #[error("{name} is invalid: {reason}")]
    Invalid {
        /// The variable's name.
        name: &'static str,
        /// Why the value was refused.
        reason: String,
    },
}

/// The refusal of `name`'s value, for `reason`.
pub fn invalid(name: &'static str, reason: impl Into<String>) -> SettingsError {
    SettingsError::Invalid {
        name,
        reason: reason.into(),
    }
}

/// Variables by name: the process environment in the binaries, a map in tests.
pub struct Env<F>(F);

/// The process environment.
pub fn process() -> Env<fn(&str) -> Option<String>> {
    Env(|name| std::env::var(name).ok())
}

impl<F: Fn(&str) -> Option<String>> Env<F> {
    /// Variables as `lookup` gives them.
    pub fn new(lookup: F) -> Self {
        Self(lookup)
    }

    /// The trimmed value of `name`; `None` when unset or blank.
    pub fn get(&self, name: &str) -> Option<String> {
        (self.0)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    /// The value of `name`, which must be set.
    pub fn required(&self, name: &'static str) -> Result<String, SettingsError> {
        self.get(name).ok_or(SettingsError::Missing(name))
    }

    /// `name` parsed as `T`, or `default` when unset.
    pub fn parsed<T>(&self, name: &'static str, default: T) -> Result<T, SettingsError>
    where
        T: FromStr,
        T::Err: Display,
    {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => raw
                .parse()
                .map_err(|e: T::Err| invalid(name, format!("`{raw}`: {e}"))),
        }
    }

    /// `name` as a whole number in `min..=max`, or `default` when unset.
    pub fn ranged(
        &self,
        name: &'static str,
        default: u64,
        min: u64,
        max: u64,
    ) -> Result<u64, SettingsError> {
        let Some(raw) = self.get(name) else {
            return Ok(default);
        };
        let value: u64 = raw
            .parse()
            .map_err(|_| invalid(name, format!("`{raw}` is not a whole number")))?;
        if !(min..=max).contains(&value) {
            return Err(invalid(name, format!("must be between {min} and {max}")));
        }
        Ok(value)
    }

    /// `name` as true (`true`, `1`, `yes`) or false (`false`, `0`, `no`), any case, or
    /// `default` when unset.
    pub fn flag(&self, name: &'static str, default: bool) -> Result<bool, SettingsError> {
        let Some(raw) = self.get(name) else {
            return Ok(default);
        };
        match raw.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Ok(true),
            "false" | "0" | "no" => Ok(false),
            _ => Err(invalid(name, format!("`{raw}` is not true or false"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> Env<impl Fn(&str) -> Option<String>> {
        Env::new(move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn values_are_trimmed_and_blank_counts_as_unset() {
        let env = env(&[("A", "  x "), ("B", "   ")]);
        assert_eq!(env.get("A").as_deref(), Some("x"));
        assert_eq!(env.get("B"), None);
        assert_eq!(env.required("B"), Err(SettingsError::Missing("B")));
    }

    #[test]
    fn flags_take_any_case() {
        let env = env(&[("A", "TRUE"), ("B", "No"), ("C", "maybe")]);
        assert_eq!(env.flag("A", false), Ok(true));
        assert_eq!(env.flag("B", true), Ok(false));
        assert_eq!(env.flag("unset", true), Ok(true));
        assert!(env.flag("C", true).is_err());
    }

    #[test]
    fn ranged_values_name_their_bounds() {
        let env = env(&[("N", "0"), ("X", "ten")]);
        assert_eq!(
            env.ranged("N", 5, 1, 10).err().map(|e| e.to_string()),
            Some("N is invalid: must be between 1 and 10".to_owned())
        );
        assert_eq!(
            env.ranged("X", 5, 1, 10).err().map(|e| e.to_string()),
            Some("X is invalid: `ten` is not a whole number".to_owned())
        );
        assert_eq!(env.ranged("unset", 5, 1, 10), Ok(5));
    }
}
