//! The admin page over plain HTTP against a real `dkimd run`, a real store
//! and a real BIND: login, sessions, CSRF, rate limiting, host checks, bad
//! input, the audit log, and that no response ever carries a private key.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod common;

use common::bind::have_named;
use common::http::{raw, Client};
use common::web::{WebEnv, PASSWORD, USER};

/// Every route of the page, with its method (and a domain that exists).
const ROUTES: &[(&str, &str)] = &[
    ("GET", "/"),
    ("POST", "/settings"),
    ("GET", "/domains/example.com"),
    ("POST", "/domains/example.com/dkim"),
    ("POST", "/domains/example.com/key/generate"),
    ("POST", "/domains/example.com/key/import"),
    ("POST", "/domains/example.com/key/import/confirm"),
    ("POST", "/domains"),
    ("POST", "/domains/example.com/features"),
    ("POST", "/domains/example.com/rename"),
    ("POST", "/domains/example.com/remove"),
    ("POST", "/domains/example.com/publish"),
    ("POST", "/keys/purge-retired"),
    ("POST", "/keys/rotate"),
    ("POST", "/domains/example.com/rotate"),
    ("POST", "/domains/example.com/key/default"),
    ("POST", "/logout"),
    ("GET", "/no/such/page"),
];

fn enable_form(csrf: &str, selector: &str) -> Vec<(String, String)> {
    [
        ("csrf", csrf),
        ("signing", "yes"),
        ("selector", selector),
        ("verify", "yes"),
        ("policy_fail", "reject"),
        ("policy_permerror", "accept"),
        ("policy_temperror", "tempfail"),
        ("policy_none", "accept"),
        ("algorithms", "rsa,ed25519"),
        ("rsa_bits", "2048"),
        ("new_key", "no"),
        ("default_domains", "dns-and-mail"),
        ("extra_domains", ""),
        ("excluded_domains", ""),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn post_owned(c: &mut Client, path: &str, f: &[(String, String)]) -> common::http::Resp {
    let pairs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    c.post(path, &pairs)
}

#[test]
fn every_route_needs_a_session_and_every_post_a_csrf_token() {
    if !have_named() {
        return;
    }
    let env = WebEnv::start("", &["example.com"]);
    let mut anon = Client::new(env.port());
    for (method, path) in ROUTES {
        let r = anon.request(method, path, (*method == "POST").then_some("a=b"));
        assert_eq!(r.status, 303, "{method} {path}: {r:?}");
        assert_eq!(r.header("location"), Some("/login"), "{method} {path}");
    }
    // A made-up session cookie is no session.
    anon.cookies.insert("dkimd_session".into(), "forged".into());
    assert_eq!(anon.get("/").status, 303);
    // The login page and the stylesheet need none.
    assert_eq!(anon.get("/login").status, 200);
    assert_eq!(anon.get("/static/style.css").status, 200);

    let mut c = Client::new(env.port());
    let r = c.login(USER, PASSWORD);
    assert_eq!(r.status, 303, "{r:?}");
    let cookie = r
        .all("set-cookie")
        .into_iter()
        .find(|c| c.starts_with("dkimd_session="))
        .unwrap()
        .to_string();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(!cookie.contains("Secure"), "no TLS here: {cookie}");
    let page = c.get("/");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Signing of outgoing mail enabled?"));
    for r in [&page, &anon.get("/login"), &anon.get("/")] {
        let csp = r.header("content-security-policy").unwrap_or("");
        assert!(csp.contains("default-src 'none'"), "{r:?}");
        assert!(csp.contains("frame-ancestors 'none'"), "{r:?}");
        assert_eq!(r.header("x-frame-options"), Some("DENY"));
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(r.header("cache-control"), Some("no-store"));
    }
    let csrf = page.csrf().unwrap();

    // POSTs without the token, or with another one, change nothing.
    let before = env.settings();
    let audit_before = env.audit_log();
    let mut bad = enable_form("", "web1");
    bad.retain(|(k, _)| k != "csrf");
    assert_eq!(post_owned(&mut c, "/settings", &bad).status, 403);
    let wrong = enable_form(&format!("{}x", &csrf[..csrf.len() - 1]), "web1");
    let r = post_owned(&mut c, "/settings", &wrong);
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.body.contains("nothing was changed"), "{}", r.body);
    for (method, path) in ROUTES.iter().filter(|(m, _)| *m == "POST") {
        let r = c.request(method, path, Some("dkim=never&pem=x"));
        assert_eq!(r.status, 403, "{path}: {r:?}");
    }
    // Another session's token is not this session's.
    let mut other = Client::new(env.port());
    other.login(USER, PASSWORD);
    let other_csrf = other.csrf("/");
    assert_ne!(other_csrf, csrf);
    assert_eq!(
        post_owned(&mut c, "/settings", &enable_form(&other_csrf, "web1")).status,
        403
    );
    // A form posted from another site is refused even with the token.
    c.extra = vec![("Origin".into(), "http://evil.example".into())];
    assert_eq!(
        post_owned(&mut c, "/settings", &enable_form(&csrf, "web1")).status,
        403
    );
    // Our host under another scheme is another origin.
    c.extra = vec![("Origin".into(), format!("https://127.0.0.1:{}", env.port()))];
    assert_eq!(
        post_owned(&mut c, "/settings", &enable_form(&csrf, "web1")).status,
        403
    );
    c.extra.clear();
    assert_eq!(
        env.settings(),
        before,
        "a refused POST changed the settings"
    );
    let added: String = env.audit_log().replacen(&audit_before, "", 1);
    assert!(!added.contains("save settings"), "{added}");
    // The refusals are audited, with why.
    assert!(
        added.contains(
            "\"action\":\"refused\",\"detail\":\"/settings: missing or stale CSRF token\""
        ),
        "{added}"
    );
    assert_eq!(
        added.matches("/settings: POST from another origin").count(),
        2,
        "{added}"
    );
    // The host must be one the page is served under (DNS rebinding).
    let r = raw(
        env.port(),
        "GET /login HTTP/1.1\r\nHost: evil.example:80\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 421, "{r:?}");
    // The page's own names under another port (an SSH tunnel) are fine.
    let r = raw(
        env.port(),
        "GET /login HTTP/1.1\r\nHost: localhost:9999\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200, "{r:?}");

    // Logging out ends the session on the server, not only in the browser.
    let stolen = c.cookies.clone();
    let r = c.post("/logout", &[("csrf", &csrf)]);
    assert_eq!(r.status, 303);
    let mut replay = Client::new(env.port());
    replay.cookies = stolen;
    assert_eq!(replay.get("/").status, 303);
    let log = env.audit_log();
    assert!(log.contains("\"action\":\"logout\""), "{log}");
}

#[test]
fn wrong_passwords_are_rate_limited_and_audited() {
    if !have_named() {
        return;
    }
    let env = WebEnv::start("login_attempts = 3\nlogin_window = 60", &["example.com"]);
    let mut c = Client::new(env.port());
    for i in 0..3 {
        let r = c.login(USER, &format!("wrong password {i}"));
        assert_eq!(r.status, 401, "{r:?}");
        assert!(r.body.contains("Wrong user name or password"));
        assert!(!c.cookies.contains_key("dkimd_session"));
    }
    // The fourth try is refused before the password is even checked.
    let r = c.login(USER, PASSWORD);
    assert_eq!(r.status, 429, "{r:?}");
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert!(r.body.contains("Too many failed logins"), "{}", r.body);
    assert!(!c.cookies.contains_key("dkimd_session"));
    let log = env.audit_log();
    assert_eq!(
        log.matches("\"action\":\"login failed\"").count(),
        3,
        "{log}"
    );
    assert!(log.contains("\"remote\":\"127.0.0.1\""), "{log}");
    assert!(!log.contains(PASSWORD), "the audit log holds a password");
}

#[test]
fn sessions_end_when_idle_or_when_the_password_changes() {
    if !have_named() {
        return;
    }
    let env = WebEnv::start("session_idle = 2", &["example.com"]);
    let mut c = Client::new(env.port());
    assert_eq!(c.login(USER, PASSWORD).status, 303);
    assert_eq!(c.get("/").status, 200);
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert_eq!(
        c.get("/").status,
        303,
        "an idle session outlived session_idle"
    );

    assert_eq!(c.login(USER, PASSWORD).status, 303);
    assert_eq!(c.get("/").status, 200);
    let o = common::run_with_input(
        common::dkimd()
            .arg("--config")
            .arg(&env.config)
            .args(["admin", "passwd", USER]),
        b"another long password\n",
    );
    assert!(o.status.success(), "{o:?}");
    assert_eq!(
        c.get("/").status,
        303,
        "a password change left the session on"
    );
    assert_eq!(c.login(USER, PASSWORD).status, 401);
    assert_eq!(c.login(USER, "another long password").status, 303);
    // Removing the user ends their sessions too.
    let o = env.dkimd(&["admin", "remove", USER]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(c.get("/").status, 303);
    // Short passwords are refused.
    let o = common::run_with_input(
        common::dkimd()
            .arg("--config")
            .arg(&env.config)
            .args(["admin", "passwd", "other"]),
        b"short\n",
    );
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("at least 12"));
}

#[test]
fn changes_show_their_steps_bad_input_changes_nothing_and_no_private_key_leaves() {
    if !have_named() {
        return;
    }
    let env = WebEnv::start("", &["example.com", "mail.example.com"]);
    let mut c = Client::new(env.port());
    assert_eq!(c.login(USER, PASSWORD).status, 303);
    let csrf = c.csrf("/");

    // Bad input: the form comes back with the errors next to the fields.
    let mut f = enable_form(&csrf, "bad selector!");
    f.retain(|(k, _)| k != "extra_domains");
    f.push(("extra_domains".into(), "ok.example\nnot_a domain..".into()));
    let before = env.settings();
    let r = post_owned(&mut c, "/settings", &f);
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body.contains("id=\"err-selector\""), "{}", r.body);
    assert!(r.body.contains("is not a valid selector"));
    assert!(r.body.contains("id=\"err-extra_domains\""));
    assert!(r.body.contains("Nothing was changed"));
    // What was typed is kept (escaped), so it can be corrected.
    assert!(r.body.contains("value=\"bad selector!\""), "{}", r.body);
    assert_eq!(env.settings(), before);

    // A good form: the steps the CLI would print, then the DNS state.
    let r = post_owned(&mut c, "/settings", &enable_form(&csrf, "web1"));
    assert_eq!(r.status, 303, "{r:?}");
    let page = c.get("/");
    assert!(
        page.body
            .contains("Enabling DKIM signing with selector web1"),
        "{}",
        page.body
    );
    assert!(page.body.contains("web1._domainkey.mail.example.com"));
    assert_eq!(
        page.body.matches("class=\"dns ok\"").count(),
        4,
        "{}",
        page.body
    );
    assert!(env.settings().contains("\"selector\": \"web1\""));
    // The steps are shown once.
    assert!(!c.get("/").body.contains("id=\"steps\""));
    // Changing the selector without a new key is refused, next to the field.
    let r = post_owned(&mut c, "/settings", &enable_form(&csrf, "web2"));
    assert_eq!(r.status, 400);
    assert!(r.body.contains("Force generation of new key"), "{}", r.body);

    // Import: garbage and a bad selector are refused; the text is not echoed.
    let junk = "-----BEGIN PRIVATE KEY-----\nAAAAnotakey\n-----END PRIVATE KEY-----";
    let r = c.post(
        "/domains/mail.example.com/key/import",
        &[("csrf", &csrf), ("pem", junk), ("selector", "")],
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body.contains("id=\"err-pem\""), "{}", r.body);
    assert!(!r.body.contains("AAAAnotakey"));
    let key = common::keygen(env.tmp.path(), "ed25519", "imp1");
    let pem = std::fs::read_to_string(&key.path).unwrap();
    let r = c.post(
        "/domains/mail.example.com/key/import",
        &[("csrf", &csrf), ("pem", &pem), ("selector", "bad sel")],
    );
    assert_eq!(r.status, 400);
    assert!(r.body.contains("id=\"err-key-selector\""));
    // A good key: first the plan, nothing saved, the key not sent back.
    let r = c.post(
        "/domains/mail.example.com/key/import",
        &[("csrf", &csrf), ("pem", &pem), ("selector", "imp1")],
    );
    assert_eq!(r.status, 200, "{r:?}");
    for line in [
        "afterwards mail.example.com signs with: ed25519 256 bits, selector imp1 (new key); rsa 2048 bits, selector web1 (global key)",
        "record imp1._domainkey.mail.example.com: published (the new key)",
        "record web1._domainkey.mail.example.com: kept",
        "record web1-ed25519._domainkey.mail.example.com: kept for retire-after (7d), then served revoked for revoke-for (30d), then removed here",
    ] {
        assert!(r.body.contains(line), "{line}: {}", r.body);
    }
    assert!(r.body.contains("id=\"import-confirm\""));
    assert!(
        !r.body.contains(pem.lines().nth(1).unwrap()),
        "the key was sent back"
    );
    assert!(env
        .named
        .dig_txt("imp1._domainkey.mail.example.com")
        .is_empty());
    // Confirmed: saved, published under exactly that selector, and the
    // global RSA key goes on signing beside it.
    let r = c.post(
        "/domains/mail.example.com/key/import/confirm",
        &[("csrf", &csrf)],
    );
    assert_eq!(r.status, 303, "{r:?}");
    assert_eq!(r.header("location"), Some("/domains/mail.example.com"));
    let page = c.get("/domains/mail.example.com");
    assert!(page.body.contains("own ed25519 key"), "{}", page.body);
    assert_eq!(
        env.named.dig_txt("web1._domainkey.mail.example.com").len(),
        1
    );
    // The global Ed25519 key no longer signs here; its record stays for
    // the overlap.
    assert_eq!(
        env.named
            .dig_txt("web1-ed25519._domainkey.mail.example.com")
            .len(),
        1
    );
    // A second confirm has nothing to confirm.
    let r = c.post(
        "/domains/mail.example.com/key/import/confirm",
        &[("csrf", &csrf)],
    );
    assert_eq!(r.status, 400, "{r:?}");
    let served = env.named.dig_txt("imp1._domainkey.mail.example.com");
    assert_eq!(served.len(), 1, "{served:?}");
    assert!(
        served[0].contains(key.record.split("p=").nth(1).unwrap()),
        "{served:?}"
    );

    // Per-domain rule, own key, back to the default key, unknown domains.
    for (path, extra) in [
        ("/domains/mail.example.com/key/generate", None),
        ("/domains/mail.example.com/key/default", None),
        ("/domains/mail.example.com/dkim", Some("never")),
    ] {
        let mut f = vec![("csrf", csrf.as_str())];
        if let Some(v) = extra {
            f.push(("dkim", v));
        }
        let r = c.post(path, &f);
        assert_eq!(r.status, 303, "{path}: {r:?}");
        let page = c.get("/domains/mail.example.com");
        assert!(page.body.contains("id=\"steps\""), "{path}");
        assert!(
            !page.body.contains("class=\"fail\""),
            "{path}: {}",
            page.body
        );
    }
    assert!(env
        .named
        .dig_txt("web1._domainkey.mail.example.com")
        .is_empty());
    assert_eq!(
        c.post(
            "/domains/nope.example/dkim",
            &[("csrf", &csrf), ("dkim", "never")]
        )
        .status,
        404
    );
    assert_eq!(
        c.post(
            "/domains/mail.example.com/dkim",
            &[("csrf", &csrf), ("dkim", "sometimes")]
        )
        .status,
        400
    );

    // The audit log names who did what, when, and the steps.
    let log = env.audit_log();
    for action in [
        "save settings",
        "import key",
        "generate key",
        "use default key",
        "set domain",
    ] {
        assert!(
            log.contains(&format!("\"action\":\"{action}\"")),
            "{action}: {log}"
        );
    }
    assert!(log.contains("\"user\":\"admin\""));
    // Changes made with the command line are in the same log.
    let o = env.dkimd(&["set", "policy-none", "accept"]);
    assert!(o.status.success(), "{o:?}");
    let log = env.audit_log();
    let last = log.lines().last().unwrap();
    assert!(last.contains("\"action\":\"set\""), "{last}");
    assert!(last.contains("\"detail\":\"policy-none=accept\""), "{last}");
    assert!(last.contains("\"user\":\"cli:"), "{last}");
    assert!(last.contains("setting: policy-none = accept"), "{last}");
    assert!(log.contains("\"time\":\"20"));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(env.tmp.path().join("state/audit.log"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o077, 0, "audit log mode {mode:o}");

    // No response body of the whole session carried a private key.
    let secrets = env.private_key_lines();
    assert!(secrets.len() >= 4, "{secrets:?}");
    assert!(c.seen.len() > 15);
    for r in &c.seen {
        assert!(!r.body.contains("PRIVATE KEY-----\n"), "{}", r.body);
        for s in &secrets {
            assert!(
                !r.body.contains(s.as_str()),
                "a response holds private key text"
            );
        }
    }
    assert!(!log.contains("PRIVATE KEY"));
}

fn curl(args: &[&str]) -> String {
    let o = std::process::Command::new("curl")
        .args(["-sS", "-i", "-k", "--max-time", "30"])
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "curl {args:?}: {o:?}");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn tls_off_loopback_and_secure_cookies() {
    if !have_named()
        || !common::require_peer("curl", std::process::Command::new("curl").arg("--version"))
        || !common::require_peer(
            "openssl",
            std::process::Command::new("openssl").arg("version"),
        )
    {
        return;
    }
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = (certs.path().join("cert.pem"), certs.path().join("key.pem"));
    let o = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let env = WebEnv::start(
        &format!(
            "tls_cert = \"{}\"\ntls_key = \"{}\"",
            cert.display(),
            key.display()
        ),
        &["example.com"],
    );
    let base = format!("https://127.0.0.1:{}", env.port());
    let jar = env.tmp.path().join("cookies.txt");
    let jar = jar.to_str().unwrap();
    let page = curl(&["-c", jar, &format!("{base}/login")]);
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(
        page.to_ascii_lowercase()
            .contains("strict-transport-security: max-age="),
        "{page}"
    );
    let login_cookie = page
        .lines()
        .find(|l| l.starts_with("set-cookie: dkimd_login="))
        .unwrap();
    assert!(login_cookie.contains("; Secure"), "{login_cookie}");
    let i = page.find("name=\"csrf\" value=\"").unwrap() + 19;
    let token = &page[i..i + page[i..].find('"').unwrap()];
    let r = curl(&[
        "-b",
        jar,
        "-c",
        jar,
        "--data-urlencode",
        &format!("csrf={token}"),
        "--data-urlencode",
        &format!("user={USER}"),
        "--data-urlencode",
        &format!("password={PASSWORD}"),
        &format!("{base}/login"),
    ]);
    assert!(r.starts_with("HTTP/1.1 303"), "{r}");
    let session = r
        .lines()
        .find(|l| l.starts_with("set-cookie: dkimd_session="))
        .unwrap();
    for flag in ["HttpOnly", "SameSite=Strict", "Secure"] {
        assert!(session.contains(flag), "{flag}: {session}");
    }
    let r = curl(&["-b", jar, &format!("{base}/")]);
    assert!(
        r.starts_with("HTTP/1.1 200") && r.contains("DKIM settings"),
        "{r}"
    );
    // Plain HTTP on the TLS port gets no page.
    let plain = std::process::Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            &format!("http://127.0.0.1:{}/login", env.port()),
        ])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&plain.stdout).contains("Log in"));

    // Off loopback without TLS, or with a key others can read: refused at startup.
    let cfg = env.tmp.path().join("other.toml");
    let check = |text: &str| {
        std::fs::write(
            &cfg,
            format!(
                "state_dir = \"{}\"\n{text}",
                env.tmp.path().join("state").display()
            ),
        )
        .unwrap();
        common::dkimd()
            .arg("--config")
            .arg(&cfg)
            .args(["run", "--check-config"])
            .output()
            .unwrap()
    };
    let o = check("[admin]\nlisten = \"0.0.0.0:8443\"\n");
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("needs admin.tls_cert"),
        "{o:?}"
    );
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let o = check(&format!(
        "[admin]\nlisten = \"0.0.0.0:8443\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
        cert.display(),
        key.display()
    ));
    assert!(!o.status.success(), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("admin TLS key"),
        "{o:?}"
    );
}

#[test]
fn failed_steps_are_shown_and_audited() {
    if !have_named() {
        return;
    }
    let env = WebEnv::start("", &["example.com", "broken.example"]);
    let mut c = Client::new(env.port());
    assert_eq!(c.login(USER, PASSWORD).status, 303);
    let csrf = c.csrf("/");
    let r = post_owned(&mut c, "/settings", &enable_form(&csrf, "web1"));
    assert_eq!(r.status, 303, "{r:?}");
    let page = c.get("/");
    let steps = &page.body[page.body.find("id=\"steps\"").unwrap()..];
    let steps = &steps[..steps.find("</section>").unwrap()];
    assert!(steps.contains("step(s) failed."), "{steps}");
    assert!(
        steps.contains(
            "<span class=\"fail\">  broken.example: failed: web1._domainkey.broken.example: "
        ),
        "{steps}"
    );
    assert!(
        steps.contains(
            "<span class=\"ok\">  example.com: web1._domainkey.example.com: record added"
        ),
        "{steps}"
    );
    let last = env.audit_log().lines().last().unwrap().to_string();
    assert!(
        last.contains("\"action\":\"save settings\"") && last.contains("\"ok\":false"),
        "{last}"
    );
}

/// A login body over 8 KiB is refused (413) and audits nothing; a long user
/// name is cut before it is echoed or audited; and the "recent changes"
/// view stays small whatever the audit log holds.
#[test]
fn login_names_and_the_recent_changes_view_are_bounded() {
    if !have_named() {
        return;
    }
    let env = WebEnv::start("", &["example.com"]);
    let mut c = Client::new(env.port());
    let csrf = c.get("/login").csrf().unwrap();
    let before = env.audit_log().len();
    let big = "u".repeat(20_000);
    let r = c.post(
        "/login",
        &[("user", &big), ("password", "x"), ("csrf", &csrf)],
    );
    assert_eq!(r.status, 413, "{r:?}");
    assert_eq!(
        env.audit_log().len(),
        before,
        "a refused body is not audited"
    );

    let name = "n".repeat(5000);
    let r = c.login(&name, "wrong password");
    assert_eq!(r.status, 401, "{r:?}");
    assert!(
        r.body.contains(&format!("{}…", "n".repeat(64))),
        "{}",
        r.body
    );
    assert!(!r.body.contains(&"n".repeat(65)));
    assert!(r.body.len() < 20_000, "{}", r.body.len());
    let log = env.audit_log();
    assert!(log.contains("\"action\":\"login failed\""), "{log}");
    assert!(
        !log.contains(&"n".repeat(65)),
        "the audit log holds the whole name"
    );

    // An audit log that already holds a 4.5 MB entry.
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(env.tmp.path().join("state/audit.log"))
        .unwrap();
    let huge = serde_json::json!({
        "time": "2026-12-01T00:00:00Z", "user": "x".repeat(1_500_000),
        "remote": "local", "action": "set", "detail": "d".repeat(3_000_000),
        "ok": true, "steps": []
    });
    writeln!(f, "{huge}").unwrap();
    let r = c.login(USER, PASSWORD);
    assert_eq!(r.status, 303, "{r:?}");
    let page = c.get("/");
    assert_eq!(page.status, 200);
    assert!(
        page.body.len() < 100_000,
        "index page of {} bytes",
        page.body.len()
    );
    // Entries after it are shown; one that long is not (nor what lies
    // behind it in the file: the view reads only the log's last 256 KiB).
    assert!(
        page.body.contains("<td>admin</td><td>login</td>"),
        "the newest entry is shown: {}",
        page.body
    );
}

/// Settings changed and signing enabled in one form: every step shows
/// once (a "publish by hand" line appeared twice), and a form over the
/// size limit gets an HTML page that says what to do, not bare text.
#[test]
fn one_form_shows_each_step_once_and_too_large_is_a_page() {
    if !have_named() {
        return;
    }
    let env = WebEnv::start("", &["example.com", "manual.test"]);
    let mut c = Client::new(env.port());
    assert_eq!(c.login(USER, PASSWORD).status, 303);
    let csrf = c.csrf("/");
    let r = post_owned(&mut c, "/settings", &enable_form(&csrf, "web1"));
    assert_eq!(r.status, 303, "{r:?}");
    let page = c.get("/");
    for name in [
        "web1._domainkey.manual.test",
        "web1-ed25519._domainkey.manual.test",
    ] {
        assert_eq!(
            page.body
                .matches(&format!("manual.test: {name}: publish by hand"))
                .count(),
            1,
            "{name}: {}",
            page.body
        );
    }
    assert_eq!(
        page.body.matches("setting: policy-fail = reject").count(),
        1
    );

    let big = "x".repeat(300_000);
    let r = c.post("/settings", &[("csrf", &csrf), ("extra_domains", &big)]);
    assert_eq!(r.status, 413, "{r:?}");
    assert!(
        r.header("content-type")
            .is_some_and(|t| t.starts_with("text/html")),
        "{r:?}"
    );
    assert!(
        r.body.contains("larger than the 256 KiB a form may send"),
        "{}",
        r.body
    );
    assert!(r.body.contains("Back button"), "{}", r.body);
}

/// An admin's day on the page, against real BIND: add a domain, turn its
/// mail feature off and on, rename it, publish or repair its records,
/// remove it; each step's records are served or gone. The page says where
/// each domain's records are published and what a DNS state means.
#[test]
fn domains_are_managed_on_the_page() {
    if !have_named() {
        return;
    }
    let env = WebEnv::start("", &["example.com"]);
    let mut c = Client::new(env.port());
    assert_eq!(c.login(USER, PASSWORD).status, 303);
    let csrf = c.csrf("/");
    assert_eq!(
        post_owned(&mut c, "/settings", &enable_form(&csrf, "web1")).status,
        303
    );
    let served = |d: &str| env.named.dig_txt(&format!("web1._domainkey.{d}")).len();

    let r = c.post(
        "/domains",
        &[
            ("csrf", &csrf),
            ("name", "New.Example.com"),
            ("dns", "on"),
            ("mail", "on"),
        ],
    );
    assert_eq!(r.status, 303, "{r:?}");
    assert_eq!(r.header("location"), Some("/domains/new.example.com"));
    assert_eq!(served("new.example.com"), 1);
    let page = c.get("/domains/new.example.com");
    assert!(
        page.body.contains("added (dns on, mail on"),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains("Records published: <span id=\"backend\">zone example.com in the file"),
        "{}",
        page.body
    );

    // Mail off: under the dns-and-mail rule it stops signing, records go.
    let r = c.post(
        "/domains/new.example.com/features",
        &[("csrf", &csrf), ("dns", "on")],
    );
    assert_eq!(r.status, 303, "{r:?}");
    assert_eq!(served("new.example.com"), 0);
    let r = c.post(
        "/domains/new.example.com/features",
        &[("csrf", &csrf), ("dns", "on"), ("mail", "on")],
    );
    assert_eq!(r.status, 303);
    assert_eq!(served("new.example.com"), 1);

    let r = c.post(
        "/domains/new.example.com/rename",
        &[("csrf", &csrf), ("to", "renamed.example.com")],
    );
    assert_eq!(r.status, 303, "{r:?}");
    assert_eq!(r.header("location"), Some("/domains/renamed.example.com"));
    assert_eq!(served("new.example.com"), 0);
    assert_eq!(served("renamed.example.com"), 1);

    let r = c.post("/domains/renamed.example.com/publish", &[("csrf", &csrf)]);
    assert_eq!(r.status, 303);
    let page = c.get("/domains/renamed.example.com");
    assert!(page.body.contains("already present"), "{}", page.body);

    // A domain whose zone file cannot be written: its state is explained.
    let r = c.post(
        "/domains",
        &[
            ("csrf", &csrf),
            ("name", "x.broken.example"),
            ("dns", "on"),
            ("mail", "on"),
        ],
    );
    assert_eq!(r.status, 303);
    let page = c.get("/domains/x.broken.example");
    assert!(
        page.body
            .contains("refused to answer for this name: it does not serve this domain"),
        "{}",
        page.body
    );

    let r = c.post("/domains/renamed.example.com/remove", &[("csrf", &csrf)]);
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/"));
    assert_eq!(served("renamed.example.com"), 0);
    assert!(!c.get("/").body.contains("renamed.example.com</a>"));

    // x.broken.example cannot publish (its zone file does not exist), and
    // a global key signs only once every domain it signs for serves it:
    // it goes before the rotation.
    let r = c.post("/domains/x.broken.example/remove", &[("csrf", &csrf)]);
    assert_eq!(r.status, 303, "{r:?}");

    // A new key is a rotation: pending, shown on the timeline, while the
    // old key signs; once a step promotes it the old ones are retired, and
    // the page offers to end their overlap early.
    let mut f = enable_form(&csrf, "web2");
    for (k, v) in f.iter_mut() {
        if k == "new_key" {
            *v = "yes".into();
        }
    }
    assert_eq!(post_owned(&mut c, "/settings", &f).status, 303);
    let page = c.get("/");
    assert!(
        page.body.contains("id=\"rotate-all-submit\""),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("data-state=\"pending\">pending since"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("retired key(s)</button>"));
    // Seen served, then promoted a TTL (300 s) later.
    for at in ["2099-01-01T00:00:00Z", "2099-01-01T01:00:00Z"] {
        let o = env.dkimd(&["rotate", "--step", "--at", at]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    }
    let page = c.get("/");
    assert!(
        page.body.contains("data-state=\"retired\">retired since"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("Delete the 2 retired key(s)"),
        "{}",
        page.body
    );
    let r = c.post("/keys/purge-retired", &[("csrf", &csrf)]);
    assert_eq!(r.status, 303);
    let page = c.get("/");
    assert!(
        page.body.contains("deleted retired rsa key, selector web1"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("retired key(s)</button>"));
    assert_eq!(served("example.com"), 0, "the old key's record is gone");
    assert_eq!(
        env.named.dig_txt("web2._domainkey.example.com").len(),
        1,
        "the new key's record stays"
    );

    // Rotate now (all domains): new pending keys, their records served,
    // the steps shown; a domain on the global key is told how instead.
    let r = c.post("/keys/rotate", &[("csrf", &csrf)]);
    assert_eq!(r.status, 303, "{r:?}");
    let page = c.get("/");
    assert!(
        page.body
            .contains("global key: new rsa key, 2048 bits, selector"),
        "{}",
        page.body
    );
    assert!(page.body.contains("data-state=\"pending\">pending since"));
    let r = c.post("/domains/example.com/rotate", &[("csrf", &csrf)]);
    let page = if r.status == 303 {
        c.get("/domains/example.com")
    } else {
        r
    };
    assert!(
        page.body.contains("rotate it with `dkimd rotate --all`"),
        "{}",
        page.body
    );

    // A bad name: an error page, nothing added, the refusal audited.
    let r = c.post("/domains", &[("csrf", &csrf), ("name", "exa mple.com")]);
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body.contains("is not a domain name"), "{}", r.body);
    let log = env.audit_log();
    for action in [
        "add domain",
        "set domain",
        "rename domain",
        "publish domain",
        "remove domain",
        "add domain (refused)",
    ] {
        assert!(
            log.contains(&format!("\"action\":\"{action}\"")),
            "{action}: {log}"
        );
    }
}

/// The domain table is paged (50 a page) and searchable by part of a name.
#[test]
fn the_domain_table_is_paged_and_searchable() {
    if !have_named() {
        return;
    }
    let names: Vec<String> = (0..70).map(|i| format!("p{i:02}.example.com")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let env = WebEnv::start("", &refs);
    let mut c = Client::new(env.port());
    assert_eq!(c.login(USER, PASSWORD).status, 303);
    let rows = |body: &str| body.matches("<tbody class=\"domain\"").count();
    let first = c.get("/");
    assert_eq!(rows(&first.body), 50, "{}", first.body);
    assert!(
        first.body.contains("70 domain(s), page 1 of 2"),
        "{}",
        first.body
    );
    assert!(first.body.contains("id=\"next-page\""));
    let second = c.get("/?page=2");
    assert_eq!(rows(&second.body), 20);
    assert!(second.body.contains("id=\"d-p69.example.com\""));
    assert!(!second.body.contains("id=\"d-p00.example.com\""));
    let found = c.get("/?q=P1");
    assert_eq!(rows(&found.body), 10, "p10 … p19");
    assert!(
        found.body.contains("10 domain(s) matching “p1”"),
        "{}",
        found.body
    );
    // Nonsense paging is not an error (past the end: an empty page).
    assert_eq!(c.get("/?page=99999").status, 200);
    assert_eq!(c.get("/?page=-1&q=%3Cscript%3E").status, 200);
    assert!(!c.get("/?q=%3Cscript%3E").body.contains("<script>"));
}
