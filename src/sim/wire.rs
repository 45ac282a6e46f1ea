//! Event lines as the platform sends them (SPEC §1): one JSON object, `type` and `ts`
//! first, then the event's own fields.
//!
//! Owns the rendering of simulated events. A [`Body`] keeps everything but the timestamp,
//! so the live phase can stamp an event with the live clock when it is sent. Guarantees:
//! every string is JSON-escaped; a `Body::Event` renders to an event that
//! `crate::core::decode` accepts (the malformed ones are `Body::Raw`, on purpose).

use crate::core::time::{format_rfc3339, Micros};

/// An event waiting for its timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// A well-formed event: its type and the JSON members after `ts` (each starting
    /// with a comma).
    Event { ty: &'static str, rest: String },
    /// A line sent as is (a malformed message).
    Raw(String),
}

impl Body {
    /// The line, with `ts` as the event time.
    pub fn render(&self, ts: Micros) -> String {
        match self {
            Body::Event { ty, rest } => {
                format!(
                    "{{\"type\":\"{ty}\",\"ts\":\"{}\"{rest}}}",
                    format_rfc3339(ts)
                )
            }
            Body::Raw(s) => s.clone(),
        }
    }
}

/// Builds the members of an event after `ts`.
#[derive(Debug)]
pub struct Fields {
    ty: &'static str,
    rest: String,
}

impl Fields {
    pub fn new(ty: &'static str) -> Self {
        Fields {
            ty,
            rest: String::with_capacity(160),
        }
    }

    pub fn str(mut self, key: &str, value: &str) -> Self {
        self.rest.push_str(",\"");
        self.rest.push_str(key);
        self.rest.push_str("\":");
        push_json_str(&mut self.rest, value);
        self
    }

    pub fn opt_str(self, key: &str, value: Option<&str>) -> Self {
        match value {
            Some(v) => self.str(key, v),
            None => self,
        }
    }

    pub fn num(mut self, key: &str, value: u64) -> Self {
        self.rest.push_str(",\"");
        self.rest.push_str(key);
        self.rest.push_str("\":");
        self.rest.push_str(&value.to_string());
        self
    }

    pub fn ts(self, key: &str, value: Micros) -> Self {
        self.str(key, &format_rfc3339(value))
    }

    pub fn body(self) -> Body {
        Body::Event {
            ty: self.ty,
            rest: self.rest,
        }
    }
}

fn push_json_str(out: &mut String, s: &str) {
    if s.bytes()
        .all(|b| b >= 0x20 && b != b'"' && b != b'\\' && b < 0x7f)
    {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        out.push_str(&serde_json::Value::from(s).to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_an_event_the_core_accepts() {
        let b = Fields::new("license.validated")
            .str("event_id", "e1")
            .str("customer_id", "c\"1")
            .str("license_key", "k1")
            .str("result", "valid")
            .body();
        let line = b.render(1_790_000_000_000_000);
        let ev = crate::core::decode(line.as_bytes()).expect("valid event");
        assert_eq!(ev.customer_id.as_deref(), Some("c\"1"));
        assert_eq!(ev.ts, 1_790_000_000_000_000);
    }
}
