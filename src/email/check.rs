//! The start-up check of the templates: refuse now what every email would be refused for.
//!
//! Owns the rules that a template (built-in, or its replacement from
//! `email.templates_dir`) must pass before the service starts. Each template is checked
//! against the variables of its kind, then rendered with sample notifications of that
//! kind, exactly as a real email would be. Guarantees: the service does not start when
//! - a template names a variable that its kind does not define (static check, under
//!   minijinja's strict undefined behaviour: the error names the variable);
//! - a rendering fails (syntax, filters, an undefined value found at run time);
//! - a subject renders empty, or with a line break (every such email would be refused);
//!
//! and every error names the template file (or `built-in NAME`).

use serde_json::{json, Value};

use super::render::{names_of, samples, Renderer, RendererSetupError};

/// Checks every template of `r`; `origin` maps a template name to where it came from.
pub(super) fn check_templates(
    r: &Renderer,
    origin: &[(String, String)],
) -> Result<(), RendererSetupError> {
    let path_of = |name: &str| {
        origin
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| p.clone())
            .unwrap_or_else(|| name.to_string())
    };
    let fail = |name: &str, message: String| RendererSetupError::Template {
        path: path_of(name),
        message,
    };
    for sample in samples() {
        let (mut ctx, _) = r
            .context(&sample)
            .map_err(|e| RendererSetupError::Template {
                path: "sample".into(),
                message: e.to_string(),
            })?;
        let [subject_t, text_t, html_t] = names_of(sample.kind);
        ctx["subject"] = json!("sample subject");
        for name in [subject_t, text_t, html_t] {
            if let Some(var) = r.undefined_variable(name, &ctx) {
                return Err(fail(
                    name,
                    format!(
                        "undefined variable `{var}` (the variables of {} emails: {})",
                        sample.kind.as_str(),
                        variables(&ctx)
                    ),
                ));
            }
        }
        let subject = r
            .render_one(subject_t, &ctx)
            .map_err(|e| fail(subject_t, e.to_string()))?;
        let subject = subject.trim();
        if subject.contains(['\r', '\n']) {
            return Err(fail(
                subject_t,
                "the subject contains a line break once rendered: every such email would be refused"
                    .into(),
            ));
        }
        if subject.is_empty() {
            return Err(fail(
                subject_t,
                "the subject is empty once rendered: every such email would be refused".into(),
            ));
        }
        ctx["subject"] = json!(subject);
        for name in [text_t, html_t] {
            r.render_one(name, &ctx)
                .map_err(|e| fail(name, e.to_string()))?;
        }
    }
    Ok(())
}

/// The top-level variables of a context, sorted, for the error message.
fn variables(ctx: &Value) -> String {
    let mut names: Vec<&str> = ctx
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    names.sort_unstable();
    names.join(", ")
}

/// Whether the dotted path `var` (`license.plan`) is defined in `ctx`: every object on
/// the way has the key. A path that goes through a value which is not an object cannot
/// be judged statically; the sample rendering judges it.
pub(super) fn is_defined(ctx: &Value, var: &str) -> bool {
    let mut v = ctx;
    for part in var.split('.') {
        match v {
            Value::Object(o) => match o.get(part) {
                Some(next) => v = next,
                None => return false,
            },
            _ => return true,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EmailConfig;

    fn with_dir(files: &[(&str, &str)]) -> Result<Renderer, RendererSetupError> {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        Renderer::new(&EmailConfig {
            templates_dir: Some(dir.path().to_path_buf()),
            ..EmailConfig::default()
        })
    }

    fn refused(files: &[(&str, &str)]) -> String {
        with_dir(files).unwrap_err().to_string()
    }

    #[test]
    fn the_built_in_templates_pass() {
        Renderer::new(&EmailConfig::default()).unwrap();
        with_dir(&[]).unwrap();
    }

    #[test]
    fn a_subject_with_a_line_break_is_refused_at_start() {
        let e = refused(&[("upgrade.subject.txt", "Grow now\nBcc: x@example.com")]);
        assert!(e.contains("upgrade.subject.txt"), "{e}");
        assert!(e.contains("line break"), "{e}");
        // A line break that comes from a {% if %} block is one too.
        let e = refused(&[(
            "renewal.subject.txt",
            "Renew {{ plan }}{% if true %}\nnow{% endif %}",
        )]);
        assert!(
            e.contains("renewal.subject.txt") && e.contains("line break"),
            "{e}"
        );
        // Surrounding blank lines are trimmed, as when sending: accepted.
        with_dir(&[("upgrade.subject.txt", "\nGrow, {{ customer_id }}\n\n")]).unwrap();
    }

    #[test]
    fn an_empty_subject_is_refused_at_start() {
        let e = refused(&[(
            "churn_warning.subject.txt",
            "  {% if false %}x{% endif %}\n",
        )]);
        assert!(
            e.contains("churn_warning.subject.txt") && e.contains("empty"),
            "{e}"
        );
    }

    #[test]
    fn an_undefined_variable_is_named_with_its_file() {
        let e = refused(&[(
            "renewal.txt",
            "Hello {{ customer_id }}, {{ no_such_variable }}",
        )]);
        assert!(e.contains("renewal.txt"), "{e}");
        assert!(e.contains("`no_such_variable`"), "{e}");
        // Nested: an attribute that the object does not have.
        let e = refused(&[("churn_warning.html", "{{ subject }} {{ customer_id.x }}")]);
        assert!(e.contains("churn_warning.html"), "{e}");
        // Inside a branch that the samples never take: still found.
        let e = refused(&[(
            "upgrade.txt",
            "{% if false %}{{ ghost }}{% endif %}{{ customer_id }}",
        )]);
        assert!(e.contains("upgrade.txt") && e.contains("`ghost`"), "{e}");
        // Loop variables and `set` names are the template's own.
        with_dir(&[(
            "upgrade.txt",
            "{% set who = customer_id %}{% for r in reasons %}{{ r }}{% endfor %}{{ who }}{{ range(2) | length }}",
        )])
        .unwrap();
    }

    #[test]
    fn is_defined_walks_objects_only() {
        let ctx = json!({"a": {"b": 1}, "s": "x", "n": null});
        assert!(is_defined(&ctx, "a.b"));
        assert!(!is_defined(&ctx, "a.c"));
        assert!(!is_defined(&ctx, "z"));
        assert!(is_defined(&ctx, "s.len"));
        assert!(is_defined(&ctx, "n"));
    }
}
