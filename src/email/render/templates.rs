//! The template files: their names by kind, the built-in sources (embedded from
//! `src/email/templates/`) and the reading of a replacement from `email.templates_dir`.
//!
//! Guarantees: every kind has a subject, a text and an HTML template, each with a built-in
//! source; a replacement file that is missing falls back to the built-in one, while one
//! that cannot be read is an error naming its path.

use std::path::Path;

use crate::core::NotificationKind;

use super::RendererSetupError;

/// The template files, by kind: `(subject, text, html)`.
pub const TEMPLATE_NAMES: [(NotificationKind, [&str; 3]); 6] = [
    (
        NotificationKind::Upgrade,
        ["upgrade.subject.txt", "upgrade.txt", "upgrade.html"],
    ),
    (
        NotificationKind::Renewal,
        ["renewal.subject.txt", "renewal.txt", "renewal.html"],
    ),
    (
        NotificationKind::ChurnWarning,
        [
            "churn_warning.subject.txt",
            "churn_warning.txt",
            "churn_warning.html",
        ],
    ),
    (
        NotificationKind::KeySharing,
        [
            "key_sharing.subject.txt",
            "key_sharing.txt",
            "key_sharing.html",
        ],
    ),
    (
        NotificationKind::RevokedUse,
        [
            "revoked_use.subject.txt",
            "revoked_use.txt",
            "revoked_use.html",
        ],
    ),
    (
        NotificationKind::ExpiringSoon,
        [
            "expiring_soon.subject.txt",
            "expiring_soon.txt",
            "expiring_soon.html",
        ],
    ),
];

pub(super) const BUILT_IN: [(&str, &str); 18] = [
    (
        "upgrade.subject.txt",
        include_str!("../templates/upgrade.subject.txt"),
    ),
    ("upgrade.txt", include_str!("../templates/upgrade.txt")),
    ("upgrade.html", include_str!("../templates/upgrade.html")),
    (
        "renewal.subject.txt",
        include_str!("../templates/renewal.subject.txt"),
    ),
    ("renewal.txt", include_str!("../templates/renewal.txt")),
    ("renewal.html", include_str!("../templates/renewal.html")),
    (
        "churn_warning.subject.txt",
        include_str!("../templates/churn_warning.subject.txt"),
    ),
    (
        "churn_warning.txt",
        include_str!("../templates/churn_warning.txt"),
    ),
    (
        "churn_warning.html",
        include_str!("../templates/churn_warning.html"),
    ),
    (
        "key_sharing.subject.txt",
        include_str!("../templates/key_sharing.subject.txt"),
    ),
    (
        "key_sharing.txt",
        include_str!("../templates/key_sharing.txt"),
    ),
    (
        "key_sharing.html",
        include_str!("../templates/key_sharing.html"),
    ),
    (
        "revoked_use.subject.txt",
        include_str!("../templates/revoked_use.subject.txt"),
    ),
    (
        "revoked_use.txt",
        include_str!("../templates/revoked_use.txt"),
    ),
    (
        "revoked_use.html",
        include_str!("../templates/revoked_use.html"),
    ),
    (
        "expiring_soon.subject.txt",
        include_str!("../templates/expiring_soon.subject.txt"),
    ),
    (
        "expiring_soon.txt",
        include_str!("../templates/expiring_soon.txt"),
    ),
    (
        "expiring_soon.html",
        include_str!("../templates/expiring_soon.html"),
    ),
];

/// The built-in source of a template, by file name.
pub fn built_in_template(name: &str) -> Option<&'static str> {
    BUILT_IN.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

pub(crate) fn names_of(kind: NotificationKind) -> [&'static str; 3] {
    TEMPLATE_NAMES
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, n)| *n)
        .expect("every kind has templates")
}

pub(super) fn read_override(dir: &Path, name: &str) -> Result<Option<String>, RendererSetupError> {
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(RendererSetupError::Template {
            path: path.display().to_string(),
            message: e.to_string(),
        }),
    }
}
