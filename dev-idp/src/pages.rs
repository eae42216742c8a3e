//! The HTML pages: the sign-in form, the sign-out form and the error page. No script, no inline
//! style: the stylesheet is `/dev-idp/style.css`. Every value is HTML-escaped.

use std::fmt::Write;

use crate::users::{Directory, ROLES};

/// Where the stylesheet is served (the rig routes `/dev-idp/*` to this service).
pub const STYLESHEET_PATH: &str = "/dev-idp/style.css";

/// The stylesheet's text.
pub const STYLESHEET: &str = include_str!("style.css");

/// `text` safe in HTML text and in a double- or single-quoted attribute.
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// The sign-in form. `redirect_url` is already sanitised; it rides along as a hidden field.
/// The first user's first organisation and role are preselected.
pub fn sign_in(directory: &Directory, redirect_url: &str) -> String {
    let first = directory.users().first().and_then(|user| user.orgs.first());
    let mut users = String::new();
    for user in directory.users() {
        let memberships = if user.orgs.is_empty() {
            "no organisation".to_owned()
        } else {
            user.orgs
                .iter()
                .map(|m| format!("{} as {}", m.slug.as_deref().unwrap_or(&m.id), m.role))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = write!(
            users,
            "\n          <option value=\"{id}\">{name} ({id}) \u{2014} {memberships}</option>",
            id = escape(&user.id),
            name = escape(user.display_name()),
            memberships = escape(&memberships),
        );
    }
    let mut orgs = format!(
        "\n          <option value=\"\"{}>No organisation</option>",
        selected(first.is_none())
    );
    for org in directory.orgs() {
        let label = match &org.slug {
            Some(slug) => format!("{slug} ({})", org.id),
            None => org.id.clone(),
        };
        let _ = write!(
            orgs,
            "\n          <option value=\"{id}\"{selected}>{label}</option>",
            id = escape(&org.id),
            selected = selected(first.is_some_and(|m| m.id == org.id)),
            label = escape(&label),
        );
    }
    let mut roles = String::new();
    let preselected_role = first.map_or("org:member", |m| m.role.as_str());
    for role in ROLES {
        let _ = write!(
            roles,
            "\n          <option value=\"{role}\"{selected}>{role}</option>",
            role = escape(role),
            selected = selected(role == preselected_role),
        );
    }
    let body = format!(
        r#"    <h1>Sign in</h1>
    <p>Choose who to be. There is no password: anyone who can reach this page can be anyone.</p>
    <form method="post" action="/sign-in">
      <input type="hidden" name="redirect_url" value="{redirect}">
      <div class="field">
        <label for="user-id">User</label>
        <select id="user-id" name="user_id" required>{users}
        </select>
      </div>
      <div class="field">
        <label for="org-id">Organisation</label>
        <select id="org-id" name="org_id" aria-describedby="org-id-help">{orgs}
        </select>
        <p id="org-id-help" class="help">The active organisation of the session, whichever user you chose.</p>
      </div>
      <div class="field">
        <label for="org-role">Role in the organisation</label>
        <select id="org-role" name="org_role" aria-describedby="org-role-help">{roles}
        </select>
        <p id="org-role-help" class="help">Ignored with &#8220;No organisation&#8221;.</p>
      </div>
      <button type="submit" id="sign-in-submit">Sign in</button>
    </form>
    <p class="after">Then on to <code>{redirect}</code>.</p>
"#,
        redirect = escape(redirect_url),
    );
    layout("Sign in", &body)
}

/// The sign-out page: a form, so that a GET changes nothing.
pub fn sign_out() -> String {
    let body = r#"    <h1>Sign out</h1>
    <form method="post" action="/sign-out">
      <button type="submit" id="sign-out-submit">Sign out</button>
    </form>
    <p class="after"><a href="/sign-in">Back to sign in</a></p>
"#;
    layout("Sign out", body)
}

/// A page saying why a request was refused.
pub fn problem(title: &str, message: &str) -> String {
    let body = format!(
        r#"    <h1>{title}</h1>
    <p id="problem" role="alert">{message}</p>
    <p class="after"><a href="/sign-in">Back to sign in</a></p>
"#,
        title = escape(title),
        message = escape(message),
    );
    layout(title, &body)
}

fn selected(yes: bool) -> &'static str {
    if yes { " selected" } else { "" }
}

fn layout(title: &str, body: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <meta name="robots" content="noindex">
  <title>{title} &#8212; dev-idp (development only)</title>
  <link rel="stylesheet" href="{STYLESHEET_PATH}">
</head>
<body>
  <main>
    <section class="banner" id="development-only" aria-labelledby="development-only-title">
      <h2 id="development-only-title">DEVELOPMENT ONLY</h2>
      <p>This is <strong>dev-idp</strong>, the stand-in identity provider of keygate&#8217;s
      <code>make run</code> rig. It signs anyone in as any user, without a password, with a key
      that lives only until it restarts. Never run it, or trust its tokens, outside the rig:
      anywhere else use a real identity provider such as Clerk.</p>
    </section>
{body}  </main>
</body>
</html>
"#,
        title = escape(title),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_text_and_attributes() {
        assert_eq!(
            escape(r#"<a href="x" title='y'>&</a>"#),
            "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
    }

    #[test]
    fn user_names_and_ids_are_escaped() {
        let directory = Directory::parse(
            r#"[{"id": "user_x", "name": "<b>X</b> & \"co\"", "orgs": [{"id": "org_y", "slug": "y", "role": "org:member"}]}]"#,
        )
        .unwrap();
        let page = sign_in(&directory, "/keys?a=1&b=\"2\"");
        assert!(
            page.contains("&lt;b&gt;X&lt;/b&gt; &amp; &quot;co&quot;"),
            "{page}"
        );
        assert!(
            page.contains(r#"value="/keys?a=1&amp;b=&quot;2&quot;""#),
            "{page}"
        );
        assert!(!page.contains("<b>"));
    }

    #[test]
    fn the_first_membership_is_preselected() {
        let page = sign_in(&Directory::built_in(), "/keys");
        assert!(
            page.contains(r#"<option value="org_acme" selected>acme (org_acme)</option>"#),
            "{page}"
        );
        assert!(
            page.contains(r#"<option value="org:admin" selected>org:admin</option>"#),
            "{page}"
        );
        assert!(
            page.contains(r#"<option value="">No organisation</option>"#),
            "{page}"
        );

        let carol_first = Directory::parse(r#"[{"id": "user_carol"}]"#).unwrap();
        let page = sign_in(&carol_first, "/keys");
        assert!(
            page.contains(r#"<option value="" selected>No organisation</option>"#),
            "{page}"
        );
        assert!(
            page.contains(r#"<option value="org:member" selected>org:member</option>"#),
            "{page}"
        );
    }
}
