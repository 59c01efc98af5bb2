//! Feature flags: a flag's definition ([`FlagSpec`]), its targeting rules, and its pure,
//! sticky, monotone evaluation against an evaluation context, with OpenFeature reasons and
//! error codes (the OFREP listener and the proxy's `X-Baton-Flags` header both call
//! [`evaluate`]).
//!
//! A flag is boolean: variant `on` (true) or `off` (false). Evaluation, in order:
//! forced off (a breaker) or `enabled = false` -> off, `DISABLED`; a targeting rule matches ->
//! on, `TARGETING_MATCH`; `percent` 0 or 100 -> `STATIC` (`DEFAULT` when rules exist but none
//! matched and percent is 0); otherwise the targeting key's sticky bucket
//! ([`crate::sticky::bucket`] salted with the flag name) decides -> `SPLIT`, on iff
//! `bucket < percent * 100`, so raising the percentage only adds keys.

mod rules;

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

pub use rules::{FlagRule, parse_rule};

use crate::sticky;

/// The longest flag name, in bytes.
pub const MAX_FLAG_NAME: usize = 64;
/// Most targeting rules one flag may have.
pub const MAX_RULES: usize = 32;

/// One flag's definition: in `[apps.<app>.flags.<name>]`, or set live by `baton flag set`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FlagSpec {
    /// `false`: off for everyone (rules and percent are kept but ignored).
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// The share of targeting keys that get it, 0 to 100 (0.01 resolution).
    #[serde(default)]
    pub percent: f64,
    /// Contexts matching any rule get it whatever the percentage.
    #[serde(default, rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<FlagRule>,
}

fn default_enabled() -> bool {
    true
}

impl FlagSpec {
    /// Why this definition is unusable, if it is: `(key, message)`.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if !self.percent.is_finite() || !(0.0..=100.0).contains(&self.percent) {
            return Err((
                "percent",
                format!("{} is out of range: use 0 to 100", self.percent),
            ));
        }
        if self.rules.len() > MAX_RULES {
            return Err((
                "match",
                format!(
                    "{} rules; at most {MAX_RULES} are allowed",
                    self.rules.len()
                ),
            ));
        }
        for (i, r) in self.rules.iter().enumerate() {
            r.check()
                .map_err(|m| ("match", format!("rule {}: {m}", i + 1)))?;
        }
        Ok(())
    }

    /// A short human summary: `off`, `on`, `10%`, `10% + 2 rules`.
    pub fn summary(&self) -> String {
        if !self.enabled {
            return "off".into();
        }
        let base = if self.percent >= 100.0 {
            "on".to_string()
        } else if self.percent <= 0.0 && !self.rules.is_empty() {
            "rules only".to_string()
        } else if self.percent <= 0.0 {
            "off (0%)".to_string()
        } else {
            format!("{}%", self.percent)
        };
        match self.rules.len() {
            0 => base,
            1 if self.percent <= 0.0 => "1 rule".into(),
            n if self.percent <= 0.0 => format!("{n} rules"),
            n => format!("{base} + {n} rule{}", if n == 1 { "" } else { "s" }),
        }
    }
}

/// Whether `name` is a valid flag name: 1 to 64 of a-z, A-Z, 0-9, '-', '_', '.'.
pub fn valid_flag_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_FLAG_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// An OpenFeature resolution reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Reason {
    /// The same value for every context.
    Static,
    /// A targeting rule matched.
    TargetingMatch,
    /// The percentage rollout decided, from the targeting key.
    Split,
    /// The flag is off (by its definition or forced off by a breaker).
    Disabled,
    /// No rule matched and the percentage is 0.
    Default,
}

impl Reason {
    /// The OpenFeature name.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Static => "STATIC",
            Reason::TargetingMatch => "TARGETING_MATCH",
            Reason::Split => "SPLIT",
            Reason::Disabled => "DISABLED",
            Reason::Default => "DEFAULT",
        }
    }
}

/// Why a flag could not be evaluated (OpenFeature error codes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    /// No flag of that name for this app and environment.
    #[error("no flag named {0:?} in this app and environment")]
    FlagNotFound(String),
    /// A percentage rollout needs a targeting key and the context has none.
    #[error(
        "flag {0:?} is rolled out to a percentage of users: send the user's id as the context's targetingKey"
    )]
    TargetingKeyMissing(String),
    /// The context is malformed (e.g. `targetingKey` is not a string).
    #[error("invalid context: {0}")]
    InvalidContext(String),
}

impl EvalError {
    /// The OpenFeature error code.
    pub fn code(&self) -> &'static str {
        match self {
            EvalError::FlagNotFound(_) => "FLAG_NOT_FOUND",
            EvalError::TargetingKeyMissing(_) => "TARGETING_KEY_MISSING",
            EvalError::InvalidContext(_) => "INVALID_CONTEXT",
        }
    }
}

/// A flag's value for one context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    /// On or off.
    pub value: bool,
    /// Why.
    pub reason: Reason,
    /// Set when a breaker forced it off: the breaker's reason.
    pub forced_off: Option<String>,
}

impl Evaluation {
    /// The variant name: `on` or `off`.
    pub fn variant(&self) -> &'static str {
        if self.value { "on" } else { "off" }
    }
}

/// What a flag is evaluated against: a targeting key and named attributes.
pub trait Context {
    /// The targeting key (the user id), if the context has one.
    fn targeting_key(&self) -> Option<&str>;
    /// An attribute's value as text, if present and scalar.
    fn attribute(&self, name: &str) -> Option<Cow<'_, str>>;
}

/// An OFREP evaluation context: a JSON object with an optional string `targetingKey`.
pub struct JsonContext<'a> {
    map: Option<&'a serde_json::Map<String, serde_json::Value>>,
}

impl<'a> JsonContext<'a> {
    /// Checks `value` (the request's `context`, or `None` when absent).
    pub fn new(value: Option<&'a serde_json::Value>) -> Result<Self, EvalError> {
        let map = match value {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::Object(m)) => Some(m),
            Some(_) => {
                return Err(EvalError::InvalidContext(
                    "\"context\" must be a JSON object".into(),
                ));
            }
        };
        if let Some(k) = map.and_then(|m| m.get("targetingKey"))
            && !k.is_string()
            && !k.is_null()
        {
            return Err(EvalError::InvalidContext(
                "\"targetingKey\" must be a string".into(),
            ));
        }
        Ok(Self { map })
    }
}

impl Context for JsonContext<'_> {
    fn targeting_key(&self) -> Option<&str> {
        self.map?
            .get("targetingKey")?
            .as_str()
            .filter(|s| !s.is_empty())
    }

    fn attribute(&self, name: &str) -> Option<Cow<'_, str>> {
        match self.map?.get(name)? {
            serde_json::Value::String(s) => Some(Cow::Borrowed(s)),
            v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_)) => {
                Some(Cow::Owned(v.to_string()))
            }
            _ => None,
        }
    }
}

/// Evaluates flag `name` defined by `spec` for `ctx`; `forced_off` is a breaker's reason when
/// one holds the flag off.
pub fn evaluate(
    name: &str,
    spec: &FlagSpec,
    forced_off: Option<&str>,
    ctx: &dyn Context,
) -> Result<Evaluation, EvalError> {
    let result = |value, reason| {
        Ok(Evaluation {
            value,
            reason,
            forced_off: None,
        })
    };
    if let Some(why) = forced_off {
        return Ok(Evaluation {
            value: false,
            reason: Reason::Disabled,
            forced_off: Some(why.to_string()),
        });
    }
    if !spec.enabled {
        return result(false, Reason::Disabled);
    }
    if spec.rules.iter().any(|r| r.matches(ctx)) {
        return result(true, Reason::TargetingMatch);
    }
    if spec.percent >= 100.0 {
        return result(true, Reason::Static);
    }
    if spec.percent <= 0.0 {
        let reason = if spec.rules.is_empty() {
            Reason::Static
        } else {
            Reason::Default
        };
        return result(false, reason);
    }
    let key = ctx
        .targeting_key()
        .ok_or_else(|| EvalError::TargetingKeyMissing(name.to_string()))?;
    let inside = sticky::in_canary(sticky::bucket(name, key), spec.percent);
    result(inside, Reason::Split)
}

#[cfg(test)]
mod tests;
