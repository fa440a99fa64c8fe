//! The admin page in real headless Chromium, against a real `dkimd run`
//! with a real store and a real BIND: log in, enable signing with a
//! selector, see the steps and every domain's DNS state turn ok, set a
//! domain to never, import a key, see bad input refused next to its field,
//! disable and see the records gone (checked with dig too). Screenshots go
//! to target/test-artifacts/web/.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod common;

use common::bind::have_named;
use common::chrome::{artifacts_dir, have_chromium, Chrome};
use common::web::{WebEnv, PASSWORD, USER};
use fantoccini::{Client, ClientBuilder, Locator};
use std::sync::Arc;
use std::time::Duration;

const DOMAINS: &[&str] = &["example.com", "mail.example.com", "dyn.example"];

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    std::fs::write(artifacts_dir().join(format!("{name}.png")), png).unwrap();
}

async fn wait_css(c: &Client, css: &str) -> fantoccini::elements::Element {
    c.wait()
        .at_most(Duration::from_secs(60))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css} did not appear: {e}"))
}

/// Clicks the element with this id.
async fn click(c: &Client, id: &str) {
    c.find(Locator::Id(id))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

async fn text(c: &Client, css: &str) -> String {
    wait_css(c, css).await.text().await.unwrap()
}

/// Waits (up to 60 s) for the element at `css` to read `want`: after a
/// form is sent, the old page may still be there, or go while it is read.
async fn wait_text(c: &Client, css: &str, want: &str) {
    let mut last = String::new();
    for _ in 0..300 {
        if let Ok(e) = c.find(Locator::Css(css)).await {
            if let Ok(t) = e.text().await {
                if t == want {
                    return;
                }
                last = t;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{css} reads {last:?}, not {want:?}");
}

/// The DNS cells of the domains table or a domain page, as (domain, selector, state).
async fn dns_cells(c: &Client) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for td in c
        .find_all(Locator::Css("td.dns[data-selector]"))
        .await
        .unwrap()
    {
        out.push((
            td.attr("data-domain").await.unwrap().unwrap_or_default(),
            td.attr("data-selector").await.unwrap().unwrap_or_default(),
            td.text().await.unwrap(),
        ));
    }
    out
}

/// Checks that the page the browser shows holds no private key text.
async fn no_secret(c: &Client, secrets: &[String]) {
    let src = c.source().await.unwrap();
    assert!(!src.contains("PRIVATE KEY-----\n"));
    for s in secrets {
        assert!(!src.contains(s.as_str()), "the page holds private key text");
    }
}

#[test]
fn admin_page_in_chromium() {
    if !have_named() || !have_chromium() {
        return;
    }
    let env = Arc::new(WebEnv::start("", DOMAINS));
    let chrome = Chrome::start();
    let (url, caps) = (chrome.url.clone(), chrome.capabilities());
    // The browser session runs in a task of its own runtime on its own
    // thread: a failed check ends that task, the result comes back here at
    // once, and chromedriver, Chromium, dkimd and BIND are stopped by the
    // guards below even if the WebDriver client hangs on its way out.
    let (tx, rx) = std::sync::mpsc::channel();
    let flow_env = env.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let r = tokio::spawn(flow(flow_env, url, caps)).await;
            let _ = tx.send(r.map_err(|e| {
                let p = e.into_panic();
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "the browser test panicked".into())
            }));
        });
    });
    let result = rx.recv_timeout(Duration::from_secs(240));
    drop(chrome);
    match result {
        Ok(Ok(())) => {}
        Ok(Err(msg)) => panic!("{msg}\ndkimd's log:\n{}", env.daemon.log_text()),
        Err(_) => panic!("the browser test did not finish in 240 s"),
    }
}

async fn flow(env: Arc<WebEnv>, url: String, caps: serde_json::Map<String, serde_json::Value>) {
    let c = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&url)
        .await
        .expect("cannot start Chromium through chromedriver");
    // The checks run in a task of their own holding a clone of the client:
    // a failed check then does not drop the last handle of the WebDriver
    // session inside a panic (which can hang), and the session is closed
    // properly only when every check passed.
    let r = tokio::spawn(steps(env, c.clone())).await;
    match r {
        Ok(()) => c.close().await.unwrap(),
        Err(e) => {
            std::mem::forget(c);
            std::panic::resume_unwind(e.into_panic());
        }
    }
}

/// The page's width against the window's, in CSS pixels.
async fn widths(c: &Client) -> (i64, i64) {
    let v = c
        .execute(
            "return [document.documentElement.scrollWidth, window.innerWidth];",
            vec![],
        )
        .await
        .unwrap();
    (v[0].as_i64().unwrap(), v[1].as_i64().unwrap())
}

/// At 800 and 1920 px wide, nothing is wider than the window: the settings
/// and domains, one domain's page, a long field error; a form too large to
/// send is stopped in the browser with an error, and keeps what was typed.
async fn layout(c: &Client, base: &str) {
    for (w, h) in [(800u32, 1000u32), (1920, 1200)] {
        c.set_window_size(w, h).await.unwrap();
        for (path, name) in [("/", "index"), ("/domains/example.com", "domain")] {
            c.goto(&format!("{base}{path}")).await.unwrap();
            wait_css(c, "main").await;
            let (page, window) = widths(c).await;
            shot(c, &format!("w{w}-{name}")).await;
            assert!(
                page <= window,
                "{path} at {w} px: page {page} > window {window}"
            );
        }
        // A long bad value: its error wraps.
        c.goto(&format!("{base}/")).await.unwrap();
        let sel = wait_css(c, "#f-selector").await;
        sel.clear().await.unwrap();
        c.execute(
            "document.getElementById('f-selector').value = 'x'.repeat(3000) + '!';",
            vec![],
        )
        .await
        .unwrap();
        click(c, "save").await;
        assert!(text(c, "#err-selector")
            .await
            .contains("is not a valid selector"));
        let (page, window) = widths(c).await;
        shot(c, &format!("w{w}-long-error")).await;
        assert!(
            page <= window,
            "long error at {w} px: page {page} > window {window}"
        );
    }
    // Too large to send: stopped in the browser, the text kept.
    c.goto(&format!("{base}/")).await.unwrap();
    wait_css(c, "#f-extra_domains").await;
    c.execute(
        "document.getElementById('f-extra_domains').value = 'a'.repeat(300000);",
        vec![],
    )
    .await
    .unwrap();
    click(c, "save").await;
    let e = text(c, ".form-too-large").await;
    assert!(e.contains("more than the 256 KiB the server takes"), "{e}");
    let kept = c
        .execute(
            "return document.getElementById('f-extra_domains').value.length;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(kept.as_i64(), Some(300_000));
    shot(c, "w1920-too-large").await;
    c.goto(&format!("{base}/")).await.unwrap();
}

/// A list field with a space inside a name is a field error; a domain is
/// added, renamed and removed on the page, with its records served and
/// gone in the real BIND, and the page says where they are published.
async fn admins_day(env: &WebEnv, c: &Client, base: &str) {
    c.goto(&format!("{base}/")).await.unwrap();
    wait_css(c, "#f-extra_domains")
        .await
        .send_keys("exa mple.com")
        .await
        .unwrap();
    click(c, "save").await;
    let e = text(c, "#err-extra_domains").await;
    assert!(
        e.contains("\"exa mple.com\" is not a domain: a name has no spaces"),
        "{e}"
    );
    assert!(
        env.settings().contains("\"extra-domains\": \"\""),
        "{}",
        env.settings()
    );
    shot(c, "08-list-field-error").await;

    c.goto(&format!("{base}/")).await.unwrap();
    wait_css(c, "#f-add-domain")
        .await
        .send_keys("added.example.com")
        .await
        .unwrap();
    click(c, "add-domain-submit").await;
    assert_eq!(text(c, "#domain-name").await, "added.example.com");
    assert!(text(c, "#backend")
        .await
        .contains("zone example.com in the file"));
    let cells = dns_cells(c).await;
    assert!(cells.iter().all(|(_, _, st)| st == "ok"), "{cells:?}");
    assert_eq!(
        env.named.dig_txt("web1._domainkey.added.example.com").len(),
        1
    );
    shot(c, "09-added").await;
    wait_css(c, "#f-rename")
        .await
        .send_keys("moved.example.com")
        .await
        .unwrap();
    click(c, "rename-submit").await;
    wait_text(c, "#domain-name", "moved.example.com").await;
    assert!(env
        .named
        .dig_txt("web1._domainkey.added.example.com")
        .is_empty());
    assert_eq!(
        env.named.dig_txt("web1._domainkey.moved.example.com").len(),
        1
    );
    click(c, "remove-submit").await;
    wait_css(c, "#settings").await;
    assert_eq!(c.current_url().await.unwrap().path(), "/");
    assert!(env
        .named
        .dig_txt("web1._domainkey.moved.example.com")
        .is_empty());
    assert!(c
        .find_all(Locator::Css("tbody[data-domain=\"moved.example.com\"]"))
        .await
        .unwrap()
        .is_empty());
    shot(c, "10-removed").await;
}

async fn steps(env: Arc<WebEnv>, c: Client) {
    let base = format!("http://127.0.0.1:{}", env.port());

    // Not logged in: the page sends the browser to the login form.
    c.goto(&format!("{base}/")).await.unwrap();
    assert_eq!(c.current_url().await.unwrap().path(), "/login");
    shot(&c, "01-login").await;
    wait_css(&c, "#login-user")
        .await
        .send_keys(USER)
        .await
        .unwrap();
    c.find(Locator::Id("login-password"))
        .await
        .unwrap()
        .send_keys("not the password")
        .await
        .unwrap();
    click(&c, "login-submit").await;
    let e = text(&c, "#login-error").await;
    assert!(e.contains("Wrong user name or password"), "{e}");
    wait_css(&c, "#login-password")
        .await
        .send_keys(PASSWORD)
        .await
        .unwrap();
    click(&c, "login-submit").await;
    wait_css(&c, "#settings").await;
    assert_eq!(c.current_url().await.unwrap().path(), "/");
    let cookie = c.get_named_cookie("dkimd_session").await.unwrap();
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(format!("{:?}", cookie.same_site()), "Some(Strict)");
    assert_eq!(text(&c, "#signing-state").await, "off");
    shot(&c, "02-settings").await;

    // Enable signing with a selector: the steps, then every DNS state ok.
    click(&c, "f-signing-yes").await;
    let sel = c.find(Locator::Id("f-selector")).await.unwrap();
    sel.clear().await.unwrap();
    sel.send_keys("web1").await.unwrap();
    click(&c, "save").await;
    let steps = text(&c, "#steps").await;
    assert!(
        steps.contains("Enabling DKIM signing with selector web1"),
        "{steps}"
    );
    assert!(
        steps.contains("key: generated rsa 2048 bits, selector web1"),
        "{steps}"
    );
    assert!(
        steps.contains("key: generated ed25519 256 bits, selector web1-ed25519"),
        "{steps}"
    );
    for d in DOMAINS {
        assert!(
            steps.contains(&format!("{d}: web1._domainkey.{d}: ")),
            "{d}: {steps}"
        );
    }
    assert!(!steps.contains("failed"), "{steps}");
    assert_eq!(text(&c, "#signing-state").await, "on");
    let cells = dns_cells(&c).await;
    assert_eq!(cells.len(), 2 * DOMAINS.len(), "{cells:?}");
    for (d, s, state) in &cells {
        assert_eq!(state, "ok", "{s}._domainkey.{d}: {cells:?}");
        assert_eq!(env.named.dig_txt(&format!("{s}._domainkey.{d}")).len(), 1);
    }
    shot(&c, "03-enabled").await;
    // What "Copy record" copies is zone-file syntax: named-checkzone takes
    // the example.com lines as they are.
    let mut lines = Vec::new();
    for t in c
        .find_all(Locator::Css("td.record textarea"))
        .await
        .unwrap()
    {
        let v = t.prop("value").await.unwrap().unwrap_or_default();
        if v.split_whitespace()
            .next()
            .is_some_and(|n| n.ends_with(".example.com."))
        {
            lines.push(v);
        }
    }
    assert_eq!(lines.len(), 4, "{lines:?}");
    let zone = common::bind::zone_file("example.com", 1, &lines);
    let zf = env.tmp.path().join("copied.zone");
    std::fs::write(&zf, zone).unwrap();
    let o = std::process::Command::new("named-checkzone")
        .arg("example.com")
        .arg(&zf)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "named-checkzone refuses the copied records: {}{}\n{lines:?}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    for l in &lines {
        assert!(l.contains(". 300 IN TXT ("), "the zone's TTL: {l}");
    }
    let table = c.find(Locator::Id("domains")).await.unwrap();
    std::fs::write(
        artifacts_dir().join("03-enabled-domains.png"),
        table.screenshot().await.unwrap(),
    )
    .unwrap();
    let secrets = env.private_key_lines();
    no_secret(&c, &secrets).await;
    layout(&c, &base).await;
    admins_day(&env, &c, &base).await;

    // Bad input: the error shows next to the field and nothing changes.
    let sel = c.find(Locator::Id("f-selector")).await.unwrap();
    sel.clear().await.unwrap();
    sel.send_keys("bad selector!").await.unwrap();
    click(&c, "save").await;
    assert!(text(&c, "#err-selector")
        .await
        .contains("is not a valid selector"));
    assert!(text(&c, "#form-error")
        .await
        .contains("Nothing was changed"));
    shot(&c, "04-bad-selector").await;
    assert!(env.settings().contains("\"selector\": \"web1\""));

    // One domain set to never: it stops signing and its records go.
    c.goto(&format!("{base}/")).await.unwrap();
    let row = "tbody[data-domain=\"mail.example.com\"]";
    wait_css(&c, &format!("{row} select[name=dkim]"))
        .await
        .select_by_value("never")
        .await
        .unwrap();
    c.find(Locator::Css(&format!("{row} button.set-dkim")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let steps = text(&c, "#steps").await;
    assert!(
        steps.contains("mail.example.com: dns on, mail on, dkim never"),
        "{steps}"
    );
    assert_eq!(text(&c, &format!("{row} td.signs")).await, "no");
    assert!(env
        .named
        .dig_txt("web1._domainkey.mail.example.com")
        .is_empty());
    assert!(env
        .named
        .dig_txt("web1-ed25519._domainkey.mail.example.com")
        .is_empty());
    assert_eq!(env.named.dig_txt("web1._domainkey.example.com").len(), 1);
    shot(&c, "05-never").await;

    // Import a key for example.com on its own page.
    let key = common::keygen(env.tmp.path(), "ed25519", "imp1");
    let pem = std::fs::read_to_string(&key.path).unwrap();
    c.goto(&format!("{base}/domains/example.com"))
        .await
        .unwrap();
    assert_eq!(text(&c, "#domain-name").await, "example.com");
    wait_css(&c, "#f-pem").await.send_keys(&pem).await.unwrap();
    c.find(Locator::Id("f-key-selector"))
        .await
        .unwrap()
        .send_keys("imp1")
        .await
        .unwrap();
    click(&c, "import-submit").await;
    // The plan first; then confirm.
    let plan = text(&c, "#import-plan").await;
    assert!(
        plan.contains(
            "afterwards example.com signs with: ed25519 256 bits, selector imp1 (new key)"
        ),
        "{plan}"
    );
    assert!(
        plan.contains("record web1-ed25519._domainkey.example.com: kept for retire-after (7d)"),
        "{plan}"
    );
    shot(&c, "06-import-plan").await;
    click(&c, "import-confirm").await;
    let steps = text(&c, "#steps").await;
    assert!(
        steps.contains("own ed25519 key, 256 bits, selector imp1"),
        "{steps}"
    );
    assert!(!steps.contains("failed"), "{steps}");
    let cells = dns_cells(&c).await;
    assert!(
        cells.iter().any(|(_, s, st)| s == "imp1" && st == "ok"),
        "{cells:?}"
    );
    let served = env.named.dig_txt("imp1._domainkey.example.com");
    assert_eq!(served.len(), 1, "{served:?}");
    assert!(served[0].contains(key.record.split("p=").nth(1).unwrap()));
    // The form is empty again: the key is not sent back to the browser.
    assert_eq!(
        c.find(Locator::Id("f-pem"))
            .await
            .unwrap()
            .prop("value")
            .await
            .unwrap(),
        Some(String::new())
    );
    shot(&c, "06-imported").await;
    let secrets = env.private_key_lines();
    no_secret(&c, &secrets).await;

    // A PEM that is no key is refused next to the field.
    wait_css(&c, "#f-pem")
        .await
        .send_keys("-----BEGIN PRIVATE KEY-----\nnonsense\n-----END PRIVATE KEY-----")
        .await
        .unwrap();
    click(&c, "import-submit").await;
    assert!(text(&c, "#err-pem")
        .await
        .contains("not a usable private key"));

    // Disable: every record is removed from DNS.
    c.goto(&format!("{base}/")).await.unwrap();
    wait_css(&c, "#f-signing-no").await.click().await.unwrap();
    click(&c, "save").await;
    let steps = text(&c, "#steps").await;
    assert!(steps.contains("Disabling DKIM signing"), "{steps}");
    assert!(!steps.contains("failed"), "{steps}");
    assert_eq!(text(&c, "#signing-state").await, "off");
    assert!(dns_cells(&c).await.is_empty());
    for name in [
        "web1._domainkey.example.com",
        "web1-ed25519._domainkey.example.com",
        "imp1._domainkey.example.com",
        "web1._domainkey.dyn.example",
        "web1-ed25519._domainkey.dyn.example",
    ] {
        assert!(env.named.dig_txt(name).is_empty(), "{name} still served");
    }
    shot(&c, "07-disabled").await;

    // The changes are in the audit log and on the page.
    let audit = text(&c, "#audit").await;
    assert!(
        audit.contains("save settings") && audit.contains("import key"),
        "{audit}"
    );

    click(&c, "logout").await;
    wait_css(&c, "#login-user").await;
    c.goto(&format!("{base}/")).await.unwrap();
    assert_eq!(c.current_url().await.unwrap().path(), "/login");

    // A 5000-character user name is cut before it comes back.
    c.execute(
        "document.getElementById('login-user').value = 'n'.repeat(5000);",
        vec![],
    )
    .await
    .unwrap();
    wait_css(&c, "#login-password")
        .await
        .send_keys("not the password")
        .await
        .unwrap();
    click(&c, "login-submit").await;
    assert!(text(&c, "#login-error")
        .await
        .contains("Wrong user name or password"));
    let shown = c
        .execute(
            "return document.getElementById('login-user').value.length;",
            vec![],
        )
        .await
        .unwrap();
    assert!(shown.as_i64().is_some_and(|n| n <= 65), "{shown:?}");
}
