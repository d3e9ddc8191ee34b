//! `GET /api/v1/openapi.json`: the admin API described as OpenAPI 3.1, generated from the same
//! route table that builds the router ([`route_table`]), so a route cannot exist without being
//! described, nor be described with roles it does not have. Each operation names the roles that
//! may call it (`x-roles`, and in its description), both ways to authenticate (a bearer token for
//! the CLI and scripts; the console's session cookie with its CSRF header), its path parameters,
//! and the refusals every route shares. Request and answer bodies are described in prose by
//! `docs/API.md`-style summaries here and by the types in `admin.rs`.

use serde_json::{json, Map, Value};

use super::admin::{route_table, Access, RoutePolicy, Verb};

/// The API's version, as in its paths.
pub const API_VERSION: &str = "v1";

/// One sentence per route: what it does. A route without one fails the tests.
pub fn summary(verb: Verb, path: &str) -> Option<&'static str> {
    use Verb::{Delete, Get, Post};
    Some(match (verb, path) {
        (Get, "/api/v1/status") => "What airs at every station, the stations' links and the running emergencies",
        (Get, "/api/v1/stations") => "Every station with its agent's link, last heartbeat and loudspeaker clusters",
        (Post, "/api/v1/live/start") => "Puts the live studio on air at the targets",
        (Post, "/api/v1/live/stop") => "Takes the live studio off air; what it interrupted resumes",
        (Get, "/api/v1/live/console") => "Who is live from the console; with a WebSocket upgrade, goes live from the browser: Opus packets in, to the targets (an operator: its own communes)",
        (Post, "/api/v1/emergency") => "Starts an emergency (khẩn cấp) from a file or stream at the targets, at once",
        (Post, "/api/v1/emergency/stop") => "Stops an emergency by id; what it interrupted resumes",
        (Get, "/api/v1/schedule") => "The schedule: time zone, groups and entries",
        (Get, "/api/v1/timeline") => "Each station's planned occurrences beside what it aired and its outages, for 1 to 31 days",
        (Post, "/api/v1/schedule/entries") => "Adds a schedule entry (once, daily, weekly or a period; normal or priority)",
        (Delete, "/api/v1/schedule/entries/{id}") => "Removes a schedule entry",
        (Get, "/api/v1/bulletins") => "The queued bulletins with each target station's state (an operator sees its own stations)",
        (Post, "/api/v1/bulletins") => "Sends a bulletin: priority ones air at the next boundary, normal ones wait for each commune to accept",
        (Post, "/api/v1/bulletins/{id}/accept") => "A commune accepts a normal bulletin, now or from a time",
        (Post, "/api/v1/bulletins/{id}/decline") => "A commune declines a normal bulletin",
        (Delete, "/api/v1/bulletins/{id}") => "Withdraws a bulletin everywhere",
        (Get, "/api/v1/library") => "The audio library: each recording's name, length and level",
        (Post, "/api/v1/library") => "Uploads a recording (raw body); it is decoded and checked before it is stored",
        (Get, "/api/v1/library/{id}/audio") => "A recording's original file, for listening in the browser",
        (Post, "/api/v1/library/{id}/rename") => "Renames a recording",
        (Delete, "/api/v1/library/{id}") => "Deletes a recording, unless the schedule or a bulletin uses it",
        (Post, "/api/v1/library/tts") => "Speaks a Vietnamese text (espeak-ng or tts_command) and keeps it as a recording, checked like an upload",
        (Get, "/api/v1/tts") => "The text-to-speech engine, its longest text and its speeds",
        (Post, "/api/v1/tts/preview") => "Speaks a Vietnamese text and answers the audio (audio/wav), without storing it",
        (Get, "/api/v1/reports/uptime") => "Uptime per station (and cluster) for a period, as JSON, CSV or a table",
        (Get, "/api/v1/reports/plays") => "Programmes aired per station for a period, as JSON, CSV or a table",
        (Get, "/api/v1/audit") => "The audit log of every change: who, what, when, from where, how it ended; filterable",
        (Get, "/api/v1/session") => "Who is calling: name, role, communes, and the session's CSRF token",
        (Post, "/api/v1/sign-out") => "Ends the console session",
        (Post, "/api/v1/session/password") => "Changes one's own password; every other session of the account ends",
        (Get, "/api/v1/users") => "The console's accounts",
        (Post, "/api/v1/users") => "Creates an account (admin, operator of communes, or viewer)",
        (Post, "/api/v1/users/{name}/disable") => "Disables an account; its sessions end",
        (Post, "/api/v1/users/{name}/enable") => "Enables an account again",
        (Post, "/api/v1/users/{name}/password") => "Sets an account's password; its sessions end",
        (Post, "/api/v1/users/{name}/role") => "Changes an account's role and communes; its sessions end",
        (Get, "/api/v1/openapi.json") => "This description",
        (Post, "/api/v1/backup") => "A consistent backup of the data directory (store, CA, enrolments, revocations, library) as a tar stream",
        (Get, "/metrics") => "Prometheus metrics",
        _ => return None,
    })
}

fn roles(access: Access) -> (&'static [&'static str], &'static str) {
    match access {
        Access::Everyone => (&["admin", "operator", "viewer"], "Every role."),
        Access::Oversight => (
            &["admin", "viewer"],
            "Admins and viewers (the log names every caller in the district).",
        ),
        Access::OwnStation => (
            &["admin", "operator"],
            "Admins, and a commune operator for its own stations only.",
        ),
        Access::Admin => (&["admin"], "The district's admins."),
    }
}

fn operation(route: &RoutePolicy) -> Value {
    let (names, who) = roles(route.access);
    let summary = summary(route.verb, route.path).unwrap_or("");
    let parameters: Vec<Value> = route
        .path
        .split('/')
        .filter_map(|part| part.strip_prefix('{').and_then(|p| p.strip_suffix('}')))
        .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
        .collect();
    let mut responses = Map::new();
    let ok = match route.verb {
        Verb::Post
            if route.path.ends_with("/entries")
                || route.path == "/api/v1/library"
                || route.path == "/api/v1/library/tts" =>
        {
            "201"
        }
        _ => "200",
    };
    let answer = match route.path {
        "/api/v1/tts/preview" => "Done; the answer is the audio (audio/wav from espeak-ng).",
        "/api/v1/backup" => {
            "Done; the answer is the archive (application/x-tar), its manifest last."
        }
        _ => "Done; the answer is JSON.",
    };
    responses.insert(ok.to_owned(), json!({ "description": answer }));
    responses.insert(
        "401".to_owned(),
        json!({ "description": "No valid token or session.", "content": error_content() }),
    );
    responses.insert(
        "403".to_owned(),
        json!({ "description": "The caller's role may not do this, a console session sent no CSRF token, or plain HTTP came from another machine.", "content": error_content() }),
    );
    responses.insert(
        "429".to_owned(),
        json!({ "description": "Too many failed authentications from this address: wait Retry-After seconds." }),
    );
    if route.verb != Verb::Get {
        responses.insert(
            "400".to_owned(),
            json!({ "description": "The request is invalid; the error names the field.", "content": error_content() }),
        );
    }
    let mut op = json!({
        "summary": summary,
        "description": format!("{summary}. Who may call it: {who}"),
        "operationId": operation_id(route),
        "x-roles": names,
        "security": [ { "bearer": [] }, { "session": [], "csrf": [] } ],
        "responses": responses,
    });
    if !parameters.is_empty() {
        op["parameters"] = Value::Array(parameters);
    }
    if route.verb == Verb::Post {
        op["requestBody"] = json!({
            "required": false,
            "content": { "application/json": { "schema": { "type": "object" } } }
        });
    }
    op
}

fn error_content() -> Value {
    json!({ "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } })
}

/// `get-api-v1-bulletins-id-accept`: stable, readable, unique per route.
fn operation_id(route: &RoutePolicy) -> String {
    let path: String = route
        .path
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let mut id = format!("{}{}", route.verb.as_str().to_ascii_lowercase(), path);
    while id.contains("--") {
        id = id.replace("--", "-");
    }
    id.trim_end_matches('-').to_owned()
}

/// The whole description.
pub fn document() -> Value {
    let mut paths = Map::new();
    for route in route_table() {
        let entry = paths
            .entry(route.path.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        entry[route.verb.as_str().to_ascii_lowercase()] = operation(&route);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "radio-server admin API",
            "version": API_VERSION,
            "description": "Every action of the console and of the radio-server commands. Roles are checked per route (x-roles). Changes are audited. A console session sends its CSRF token in X-CSRF-Token with every request that is not GET.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer", "description": "The district's admin.token, or an [[admin_token]] of the config." },
                "session": { "type": "apiKey", "in": "cookie", "name": "__Host-radio_session", "description": "A console sign-in (POST /api/v1/sign-in)." },
                "csrf": { "type": "apiKey", "in": "header", "name": "X-CSRF-Token", "description": "The session's CSRF token (GET /api/v1/session), on every change made with a session." },
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": { "type": "string", "description": "One line, naming the field or the reason." },
                        "message_vi": { "type": "string", "description": "The same in Vietnamese, where the server has it." },
                    },
                },
            },
        },
    })
}

/// The route.
pub(crate) async fn openapi() -> axum::Json<Value> {
    axum::Json(document())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_described_with_its_roles() {
        let doc = document();
        for route in route_table() {
            assert!(
                summary(route.verb, route.path).is_some(),
                "{} {}: add a summary in openapi.rs",
                route.verb.as_str(),
                route.path
            );
            let op = &doc["paths"][route.path][route.verb.as_str().to_ascii_lowercase()];
            assert!(
                op.is_object(),
                "{} {} missing",
                route.verb.as_str(),
                route.path
            );
            let (names, _) = roles(route.access);
            assert_eq!(op["x-roles"], json!(names), "{}", route.path);
            if route.path.contains('{') {
                assert!(op["parameters"][0]["in"] == "path", "{}", route.path);
            }
        }
        // Only routes that exist.
        let described: usize = doc["paths"]
            .as_object()
            .expect("paths")
            .values()
            .map(|p| p.as_object().expect("methods").len())
            .sum();
        assert_eq!(described, route_table().len());
        let ids: std::collections::BTreeSet<String> =
            route_table().iter().map(operation_id).collect();
        assert_eq!(ids.len(), route_table().len(), "operation ids are unique");
    }

    #[test]
    fn a_viewer_route_and_an_admin_route_say_so() {
        let doc = document();
        assert_eq!(
            doc["paths"]["/api/v1/emergency"]["post"]["x-roles"],
            json!(["admin"])
        );
        assert_eq!(
            doc["paths"]["/api/v1/audit"]["get"]["x-roles"],
            json!(["admin", "viewer"])
        );
        assert_eq!(doc["openapi"], "3.1.0");
    }
}
