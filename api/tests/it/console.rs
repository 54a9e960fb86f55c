//! `/console/`: the embedded operator console, its fallback to the app for its own routes, and
//! the headers that keep it from running or sending anything but its own code.

use crate::common::TestApp;

async fn get(app: &TestApp, path: &str) -> reqwest::Response {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .get(app.url(path))
        .send()
        .await
        .expect("request")
}

fn header(resp: &reqwest::Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn the_console_is_served_with_a_strict_content_security_policy() {
    let app = TestApp::spawn().await;
    let resp = get(&app, "/console/").await;
    let csp = header(&resp, "content-security-policy");
    assert_eq!(csp, wirehook_api::console::CONTENT_SECURITY_POLICY);
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{directive} in {csp}");
    }
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    assert_eq!(header(&resp, "x-content-type-options"), "nosniff");
    if wirehook_api::console::is_built() {
        assert_eq!(resp.status(), 200);
        assert!(header(&resp, "content-type").starts_with("text/html"));
        let body = resp.text().await.expect("body");
        assert!(body.contains("<div id=\"app\">"), "{body}");
    } else {
        // A Rust-only build says how to get the console instead of failing.
        assert_eq!(resp.status(), 503);
        let body = resp.text().await.expect("body");
        assert!(body.contains("scripts/console.sh build"), "{body}");
    }
}

#[tokio::test]
async fn the_apps_own_paths_get_the_app_and_missing_files_are_404() {
    let app = TestApp::spawn().await;
    let resp = get(&app, "/console").await;
    assert_eq!(resp.status(), 301);
    assert_eq!(header(&resp, "location"), "/console/");
    if !wirehook_api::console::is_built() {
        return;
    }
    let index = get(&app, "/console/").await.text().await.expect("index");
    for route in [
        "/console/events",
        "/console/events/42?status=failed",
        "/console/configs/new",
    ] {
        let resp = get(&app, route).await;
        assert_eq!(resp.status(), 200, "{route}");
        assert_eq!(header(&resp, "cache-control"), "no-cache", "{route}");
        assert_eq!(resp.text().await.expect("body"), index, "{route}");
    }
    let resp = get(&app, "/console/assets/missing-0000.js").await;
    assert_eq!(resp.status(), 404);
    // The assets the page names are served, cacheable for good (their names carry their hash).
    let script = index
        .split("src=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a script in index.html");
    let resp = get(&app, script).await;
    assert_eq!(resp.status(), 200, "{script}");
    assert!(
        header(&resp, "content-type").contains("javascript"),
        "{script}"
    );
    assert!(
        header(&resp, "cache-control").contains("immutable"),
        "{script}"
    );
}

#[tokio::test]
async fn the_console_only_answers_reads() {
    let app = TestApp::spawn().await;
    let resp = app
        .client
        .post(app.url("/console/"))
        .body("x")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 405);
    assert_eq!(header(&resp, "allow"), "GET, HEAD");
    let (_, body) = crate::common::read(resp).await;
    assert_eq!(crate::common::error_code(&body), "method_not_allowed");
}
