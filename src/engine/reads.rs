//! Which parts of a call (`context.http`, `context.token`) a policy set can
//! read, found by walking the policies' JSON form (Cedar's EST). A `Check`
//! decision is memoised under only those parts ([`super::memo`]), so two
//! calls that differ only in what no policy can see share one answer, and
//! calls that differ in anything a policy can see never do.
//!
//! The walk is conservative: a field counts as read when an expression
//! names it (`context.http.path`, `context.token has supplier`), and a whole
//! record counts as read when it is used as a value rather than only looked
//! into (`context.http == {...}`, `context` passed anywhere whole). A policy
//! that cannot be turned into JSON makes every field count.

use serde_json::Value;

/// The call's fields a policy set can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CallReads {
    pub method: bool,
    pub path: bool,
    pub route: bool,
    pub scopes: bool,
    pub consumer: bool,
    pub supplier: bool,
    pub delegation_source: bool,
    pub client_id: bool,
}

impl CallReads {
    /// Every field: what nothing is known about.
    pub const ALL: Self = Self {
        method: true,
        path: true,
        route: true,
        scopes: true,
        consumer: true,
        supplier: true,
        delegation_source: true,
        client_id: true,
    };

    /// What the policies' JSON forms read; `None` among them (a policy that
    /// would not convert) reads everything.
    pub fn of_policies(policies: impl IntoIterator<Item = Option<Value>>) -> Self {
        let mut reads = Self::default();
        for p in policies {
            match p {
                Some(json) => visit(&json, &mut reads),
                None => return Self::ALL,
            }
        }
        reads
    }

    /// What `cedar_policy`'s policy set can read: its policies (static and
    /// linked) and templates.
    pub fn of_set(set: &cedar_policy::PolicySet) -> Self {
        let policies = set.policies().map(|p| p.to_json().ok());
        let templates = set.templates().map(|t| t.to_json().ok());
        Self::of_policies(policies.chain(templates))
    }

    /// `context has …path`: whether the attribute is there. `http` and
    /// `token` always are in a call; a field's presence is read like the field.
    fn tested(&mut self, path: &[&str]) {
        match path {
            ["http"] | ["token"] => {}
            _ => self.read(path),
        }
    }

    fn read(&mut self, path: &[&str]) {
        match path {
            [] => *self = Self::ALL,
            ["http"] => {
                self.method = true;
                self.path = true;
                self.route = true;
            }
            ["token"] => {
                self.scopes = true;
                self.consumer = true;
                self.supplier = true;
                self.delegation_source = true;
                self.client_id = true;
            }
            ["http", field, ..] => match *field {
                "method" => self.method = true,
                "path" => self.path = true,
                "route" => self.route = true,
                // No such field: reading it is an error whatever the call
                // says, so nothing of the call decides it.
                _ => {}
            },
            ["token", field, ..] => match *field {
                "scopes" => self.scopes = true,
                "consumer" => self.consumer = true,
                "supplier" => self.supplier = true,
                "delegationSource" => self.delegation_source = true,
                "clientId" => self.client_id = true,
                _ => {}
            },
            // `context.owner`, `context.delegation`: in the memo key anyway.
            _ => {}
        }
    }
}

/// The attribute path of `context.a.b…` (`[]` for `context` itself), when
/// `v` is such a chain.
fn chain(v: &Value) -> Option<Vec<&str>> {
    let obj = v.as_object()?;
    if let Some(var) = obj.get("Var") {
        return (var.as_str() == Some("context") && obj.len() == 1).then(Vec::new);
    }
    let get = obj.get(".")?.as_object()?;
    let mut path = chain(get.get("left")?)?;
    path.push(get.get("attr")?.as_str()?);
    Some(path)
}

/// Record what `v` reads of the context.
fn visit(v: &Value, reads: &mut CallReads) {
    // A chain reached here is used as a value: all of it is read.
    if let Some(path) = chain(v) {
        reads.read(&path);
        return;
    }
    match v {
        Value::Object(obj) => {
            // `chain has a` or `chain has a.b`: the tested fields are read
            // (their presence decides), the chain itself only looked into.
            if let Some(has) = obj.get("has").and_then(Value::as_object)
                && let Some(mut path) = has.get("left").and_then(chain)
            {
                match has.get("attr") {
                    Some(Value::String(a)) => {
                        path.push(a);
                        reads.tested(&path);
                    }
                    Some(Value::Array(attrs)) if attrs.iter().all(Value::is_string) => {
                        for a in attrs.iter().filter_map(Value::as_str) {
                            path.push(a);
                            reads.tested(&path);
                        }
                    }
                    // A form this walk does not know: the whole chain.
                    _ => reads.read(&path),
                }
                for (k, rest) in obj {
                    if k != "has" {
                        visit(rest, reads);
                    }
                }
                return;
            }
            for rest in obj.values() {
                visit(rest, reads);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| visit(i, reads)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reads(src: &str) -> CallReads {
        let set: cedar_policy::PolicySet = src.parse().unwrap();
        CallReads::of_set(&set)
    }

    #[test]
    fn named_fields_are_read_and_nothing_else() {
        let r =
            reads(r#"permit (principal, action, resource) when { context.http.method == "GET" };"#);
        assert_eq!(
            r,
            CallReads {
                method: true,
                ..CallReads::default()
            }
        );
        let r = reads(
            r#"permit (principal, action, resource)
               when { context has token && !(context.token has supplier) && resource in context.token.scopes }
               unless { context.http.path like "/x/*" };"#,
        );
        assert_eq!(
            r,
            CallReads {
                path: true,
                scopes: true,
                supplier: true,
                ..CallReads::default()
            }
        );
    }

    #[test]
    fn a_record_used_whole_reads_all_of_it() {
        let r = reads(
            r#"permit (principal, action, resource)
               when { context.http == {"method": "GET", "path": "/", "route": "/"} };"#,
        );
        assert!(r.method && r.path && r.route);
        assert!(!r.scopes && !r.consumer);
        let r = reads(
            r#"permit (principal, action, resource) when { context.token.consumer == principal || context == {} };"#,
        );
        assert_eq!(r, CallReads::ALL);
        // Looked into through something other than a chain: all of it.
        let r = reads(
            r#"permit (principal, action, resource)
               when { (if principal == resource then context.token else context.token).clientId == "x" };"#,
        );
        assert!(r.scopes && r.consumer && r.supplier && r.delegation_source && r.client_id);
    }

    #[test]
    fn extended_has_reads_each_step() {
        let r = reads(
            r#"permit (principal, action, resource) when { context has token.delegationSource };"#,
        );
        assert!(r.delegation_source);
        assert!(!r.path && !r.client_id);
    }

    #[test]
    fn the_shipped_policies_read_the_token_not_the_request() {
        let src = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/api-access.cedar"),
        )
        .unwrap();
        let r = reads(&src);
        assert!(!r.method && !r.path && !r.route, "{r:?}");
        assert!(r.scopes && r.supplier && r.consumer, "{r:?}");
    }

    #[test]
    fn policies_that_do_not_convert_read_everything() {
        assert_eq!(CallReads::of_policies([None]), CallReads::ALL);
        assert_eq!(CallReads::of_policies([]), CallReads::default());
    }
}
