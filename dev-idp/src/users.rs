//! The users offered on the sign-in form: built in, or read from a `--users` JSON file.
//!
//! The file is a list of users, each with the organisations it belongs to:
//! `[{"id": "user_alice", "name": "Alice", "orgs": [{"id": "org_acme", "slug": "acme",
//! "role": "org:admin"}]}, {"id": "user_carol"}]`. Every error names the field it is about.

use std::path::Path;

use serde::Deserialize;

/// The roles the form offers, Clerk's two default organisation roles.
pub const ROLES: [&str; 2] = ["org:admin", "org:member"];

/// Longest id, slug or name accepted; ids end up in headers and database rows.
const MAX_ID_CHARS: usize = 64;
const MAX_NAME_CHARS: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// The token's `sub`, Clerk-style: `user_alice`.
    pub id: String,
    /// Shown on the form; the id when absent.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub orgs: Vec<Membership>,
}

/// A user's membership: the organisation and the role it has there. The form preselects the
/// first user's first membership; any configured organisation and role can still be chosen.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Membership {
    /// The token's `org_id`, Clerk-style: `org_acme`.
    pub id: String,
    /// The token's `org_slug`; omitted from the token when absent.
    #[serde(default)]
    pub slug: Option<String>,
    /// `org:admin` or `org:member`.
    pub role: String,
}

/// An organisation, as offered on the form and put in tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Org {
    pub id: String,
    pub slug: Option<String>,
}

impl User {
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.id)
    }
}

/// The validated users and the organisations they name, in the order first named.
#[derive(Debug, Clone)]
pub struct Directory {
    users: Vec<User>,
    orgs: Vec<Org>,
}

/// A `--users` file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error("users file {path}: cannot read it: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("users file {path}: {field}: {message}")]
    Invalid {
        path: String,
        field: String,
        message: String,
    },
}

/// A problem found in the users list: the field it is in and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    fn new(field: String, message: impl Into<String>) -> Self {
        FieldError {
            field,
            message: message.into(),
        }
    }
}

impl Directory {
    /// alice (acme, org:admin), bob (acme, org:member), carol (no organisation).
    pub fn built_in() -> Self {
        let acme = |role: &str| Membership {
            id: "org_acme".to_owned(),
            slug: Some("acme".to_owned()),
            role: role.to_owned(),
        };
        let user = |id: &str, name: &str, orgs: Vec<Membership>| User {
            id: id.to_owned(),
            name: Some(name.to_owned()),
            orgs,
        };
        Directory::from_users(vec![
            user("user_alice", "Alice", vec![acme("org:admin")]),
            user("user_bob", "Bob", vec![acme("org:member")]),
            user("user_carol", "Carol", vec![]),
        ])
    }

    /// Reads and validates a `--users` file.
    pub fn load(path: &Path) -> Result<Self, UsersError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| UsersError::Read {
            path: shown.clone(),
            source,
        })?;
        Directory::parse(&text).map_err(|e| UsersError::Invalid {
            path: shown,
            field: e.field,
            message: e.message,
        })
    }

    /// Parses and validates the JSON text of a users list.
    pub fn parse(text: &str) -> Result<Self, FieldError> {
        let deserializer = &mut serde_json::Deserializer::from_str(text);
        let users: Vec<User> = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let field = match e.path().to_string() {
                path if path == "." => "(the list)".to_owned(),
                path => path,
            };
            FieldError::new(field, e.inner().to_string())
        })?;
        validate(&users)?;
        Ok(Directory::from_users(users))
    }

    fn from_users(users: Vec<User>) -> Self {
        let mut orgs: Vec<Org> = Vec::new();
        for membership in users.iter().flat_map(|user| &user.orgs) {
            if !orgs.iter().any(|org| org.id == membership.id) {
                orgs.push(Org {
                    id: membership.id.clone(),
                    slug: membership.slug.clone(),
                });
            }
        }
        Directory { users, orgs }
    }

    pub fn users(&self) -> &[User] {
        &self.users
    }

    pub fn orgs(&self) -> &[Org] {
        &self.orgs
    }

    pub fn user(&self, id: &str) -> Option<&User> {
        self.users.iter().find(|user| user.id == id)
    }

    pub fn org(&self, id: &str) -> Option<&Org> {
        self.orgs.iter().find(|org| org.id == id)
    }
}

fn validate(users: &[User]) -> Result<(), FieldError> {
    if users.is_empty() {
        return Err(FieldError::new(
            "(the list)".to_owned(),
            "is empty: give at least one user",
        ));
    }
    let mut slugs: Vec<(&str, Option<&str>)> = Vec::new();
    for (i, user) in users.iter().enumerate() {
        check_id(&format!("[{i}].id"), &user.id)?;
        if users[..i].iter().any(|earlier| earlier.id == user.id) {
            return Err(FieldError::new(
                format!("[{i}].id"),
                format!("duplicate user id {:?}", user.id),
            ));
        }
        if let Some(name) = &user.name {
            check_name(&format!("[{i}].name"), name)?;
        }
        for (j, membership) in user.orgs.iter().enumerate() {
            let at = format!("[{i}].orgs[{j}]");
            check_id(&format!("{at}.id"), &membership.id)?;
            if user.orgs[..j]
                .iter()
                .any(|earlier| earlier.id == membership.id)
            {
                return Err(FieldError::new(
                    format!("{at}.id"),
                    format!("{:?} is listed twice for this user", membership.id),
                ));
            }
            if let Some(slug) = &membership.slug {
                check_id(&format!("{at}.slug"), slug)?;
            }
            if !ROLES.contains(&membership.role.as_str()) {
                return Err(FieldError::new(
                    format!("{at}.role"),
                    format!(
                        "{:?} is not a role the form offers: use \"org:admin\" or \"org:member\"",
                        membership.role
                    ),
                ));
            }
            let slug = membership.slug.as_deref();
            match slugs.iter().find(|(id, _)| *id == membership.id) {
                Some((_, earlier)) if *earlier != slug => {
                    return Err(FieldError::new(
                        format!("{at}.slug"),
                        format!(
                            "organisation {:?} has slug {:?} for an earlier user; give it the same slug everywhere",
                            membership.id,
                            earlier.unwrap_or("(none)")
                        ),
                    ));
                }
                Some(_) => {}
                None => slugs.push((&membership.id, slug)),
            }
        }
    }
    Ok(())
}

/// Ids and slugs reach headers, logs and database rows: keep them to a plain alphabet.
fn check_id(field: &str, value: &str) -> Result<(), FieldError> {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    if value.is_empty() || value.chars().count() > MAX_ID_CHARS || !value.chars().all(plain) {
        return Err(FieldError::new(
            field.to_owned(),
            format!("{value:?} must be 1 to {MAX_ID_CHARS} characters of A-Z a-z 0-9 _ - ."),
        ));
    }
    Ok(())
}

fn check_name(field: &str, value: &str) -> Result<(), FieldError> {
    if value.trim().is_empty()
        || value.chars().count() > MAX_NAME_CHARS
        || value.chars().any(char::is_control)
    {
        return Err(FieldError::new(
            field.to_owned(),
            format!(
                "{value:?} must be 1 to {MAX_NAME_CHARS} characters, not blank, without control characters"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> FieldError {
        Directory::parse(text).unwrap_err()
    }

    #[test]
    fn built_in_users_are_alice_bob_and_carol() {
        let directory = Directory::built_in();
        let ids: Vec<&str> = directory.users().iter().map(|u| u.id.as_str()).collect();
        assert_eq!(ids, ["user_alice", "user_bob", "user_carol"]);
        assert_eq!(
            directory.orgs(),
            [Org {
                id: "org_acme".to_owned(),
                slug: Some("acme".to_owned())
            }]
        );
        assert_eq!(
            directory.user("user_alice").unwrap().orgs[0].role,
            "org:admin"
        );
        assert_eq!(
            directory.user("user_bob").unwrap().orgs[0].role,
            "org:member"
        );
        assert!(directory.user("user_carol").unwrap().orgs.is_empty());
        // The built-in list passes the same checks as a file.
        validate(directory.users()).unwrap();
    }

    #[test]
    fn a_valid_file_is_read_with_its_orgs() {
        let directory = Directory::parse(
            r#"[{"id": "user_dan", "orgs": [{"id": "org_x", "role": "org:member"},
                                            {"id": "org_y", "slug": "y", "role": "org:admin"}]},
                {"id": "user_eve", "name": "Eve", "orgs": [{"id": "org_y", "slug": "y", "role": "org:member"}]}]"#,
        )
        .unwrap();
        assert_eq!(directory.users().len(), 2);
        assert_eq!(
            directory.user("user_dan").unwrap().display_name(),
            "user_dan"
        );
        let orgs: Vec<&str> = directory.orgs().iter().map(|o| o.id.as_str()).collect();
        assert_eq!(orgs, ["org_x", "org_y"]);
        assert_eq!(directory.org("org_x").unwrap().slug, None);
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (
                r#"[{"id": "user_a", "orgs": [{"id": "org_a", "role": "admin"}]}]"#,
                "[0].orgs[0].role",
                "org:admin",
            ),
            (
                r#"[{"id": "user_a"}, {"id": "user a"}]"#,
                "[1].id",
                "A-Z a-z 0-9",
            ),
            (r#"[{"id": ""}]"#, "[0].id", "1 to 64"),
            (
                r#"[{"id": "user_a"}, {"id": "user_a"}]"#,
                "[1].id",
                "duplicate user id",
            ),
            (
                r#"[{"id": "user_a", "name": "  "}]"#,
                "[0].name",
                "not blank",
            ),
            (
                r#"[{"id": "user_a", "orgs": [{"id": "org_a", "slug": "a b", "role": "org:admin"}]}]"#,
                "[0].orgs[0].slug",
                "A-Z",
            ),
            (
                r#"[{"id": "user_a", "orgs": [{"id": "org_a", "role": "org:admin"}, {"id": "org_a", "role": "org:member"}]}]"#,
                "[0].orgs[1].id",
                "listed twice",
            ),
            (
                r#"[{"id": "user_a", "orgs": [{"id": "org_a", "slug": "a", "role": "org:admin"}]},
                 {"id": "user_b", "orgs": [{"id": "org_a", "slug": "b", "role": "org:admin"}]}]"#,
                "[1].orgs[0].slug",
                "same slug",
            ),
            (
                r#"[{"id": "user_a", "nmae": "A"}]"#,
                "[0].nmae",
                "unknown field",
            ),
            (r#"[{"id": 7}]"#, "[0].id", "invalid type"),
            (
                r#"[{"id": "user_a", "orgs": [{"id": "org_a"}]}]"#,
                "[0].orgs[0]",
                "missing field `role`",
            ),
            ("[]", "(the list)", "at least one user"),
            (r#"{"id": "user_a"}"#, "(the list)", "expected a sequence"),
        ];
        for (text, field, message) in cases {
            let e = error(text);
            assert_eq!(e.field, field, "{text}: {e:?}");
            assert!(e.message.contains(message), "{text}: {e:?}");
        }
    }

    #[test]
    fn a_file_error_names_the_file_and_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.json");
        std::fs::write(
            &path,
            r#"[{"id": "user_a", "orgs": [{"id": "org_a", "role": "owner"}]}]"#,
        )
        .unwrap();
        let message = Directory::load(&path).unwrap_err().to_string();
        assert!(
            message.starts_with(&format!(
                "users file {}: [0].orgs[0].role: ",
                path.display()
            )),
            "{message}"
        );

        let missing = dir.path().join("absent.json");
        let message = Directory::load(&missing).unwrap_err().to_string();
        assert!(message.contains("absent.json: cannot read it"), "{message}");
    }
}
