//! A flag's targeting rule: an attribute of the evaluation context equals a value, is one of
//! a list, or starts with a prefix; and its command-line form (`plan=pro`, `country=DE,FR`,
//! `email^=qa-`, `header:x-beta=1`).

use serde::{Deserialize, Serialize};

use super::Context;

/// The longest attribute name or value in a rule, in bytes.
pub const MAX_RULE_TEXT: usize = 256;

/// `{ attribute = "plan", equals = "pro" }`, `{ attribute = "country", in = ["DE", "FR"] }`,
/// `{ attribute = "email", prefix = "qa-" }`. The proxy's header evaluation offers request
/// headers as `header:<lower-case name>` and cookies as `cookie:<name>`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FlagRule {
    /// The context attribute (`targetingKey` is one too).
    pub attribute: String,
    /// The value equals this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<String>,
    /// Or is one of these.
    #[serde(default, rename = "in", skip_serializing_if = "Option::is_none")]
    pub one_of: Option<Vec<String>>,
    /// Or starts with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

impl FlagRule {
    /// Whether the context matches.
    pub fn matches(&self, ctx: &dyn Context) -> bool {
        let Some(v) = ctx.attribute(&self.attribute) else {
            return false;
        };
        if let Some(e) = &self.equals {
            return *v == **e;
        }
        if let Some(list) = &self.one_of {
            return list.iter().any(|x| *x == *v);
        }
        if let Some(p) = &self.prefix {
            return v.starts_with(p.as_str());
        }
        false
    }

    /// Why the rule is unusable, if it is.
    pub fn check(&self) -> Result<(), String> {
        if self.attribute.is_empty() {
            return Err("\"attribute\" is empty: name a context attribute, e.g. \"plan\"".into());
        }
        let n = [
            self.equals.is_some(),
            self.one_of.is_some(),
            self.prefix.is_some(),
        ]
        .into_iter()
        .filter(|x| *x)
        .count();
        if n != 1 {
            return Err("needs exactly one of \"equals\", \"in\" or \"prefix\"".into());
        }
        let texts = std::iter::once(&self.attribute)
            .chain(&self.equals)
            .chain(self.one_of.iter().flatten())
            .chain(&self.prefix);
        for t in texts {
            if t.len() > MAX_RULE_TEXT {
                return Err(format!(
                    "a name or value is {} bytes long; at most {MAX_RULE_TEXT}",
                    t.len()
                ));
            }
        }
        if self.one_of.as_ref().is_some_and(Vec::is_empty) {
            return Err("\"in\" is empty: list at least one value".into());
        }
        Ok(())
    }
}

impl std::fmt::Display for FlagRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let a = &self.attribute;
        match (&self.equals, &self.one_of, &self.prefix) {
            (Some(e), _, _) => write!(f, "{a:?}={e:?}"),
            (_, Some(l), _) => write!(f, "{a:?} in {l:?}"),
            (_, _, Some(p)) => write!(f, "{a:?}^={p:?}"),
            _ => write!(f, "{a:?}"),
        }
    }
}

/// Parses a rule's command-line form: `ATTR=VALUE` (equals), `ATTR=A,B` (one of),
/// `ATTR^=PREFIX` (starts with). `header:x-beta=1` is the attribute `header:x-beta`.
pub fn parse_rule(s: &str) -> Result<FlagRule, String> {
    let usage =
        "write ATTR=VALUE, ATTR=A,B (one of) or ATTR^=PREFIX, e.g. plan=pro or header:x-beta=1";
    let (attr, value, prefix) = match s.split_once('=') {
        Some((a, v)) if a.ends_with('^') => (&a[..a.len() - 1], v, true),
        Some((a, v)) => (a, v, false),
        None => return Err(format!("{s:?} has no '=': {usage}")),
    };
    let mut rule = FlagRule {
        attribute: attr.trim().to_string(),
        equals: None,
        one_of: None,
        prefix: None,
    };
    if prefix {
        rule.prefix = Some(value.to_string());
    } else if value.contains(',') {
        rule.one_of = Some(value.split(',').map(str::to_string).collect());
    } else {
        rule.equals = Some(value.to_string());
    }
    rule.check().map_err(|m| format!("{s:?}: {m}; {usage}"))?;
    Ok(rule)
}
