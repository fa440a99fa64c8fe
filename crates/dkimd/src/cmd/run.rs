//! `dkimd run`: the milter daemon, with the admin page beside it when
//! `[admin] listen` is set, until SIGTERM or SIGINT. This is where the two
//! meet: the daemon and the page never import each other.

use dkimd::{daemon, logging, outln, web};
use dkimd_core::config::Config;
use std::process::ExitCode;

/// Runs the daemon (or, with `check_only`, checks the configuration, the
/// store and the page's TLS files, and says what it would serve).
pub fn run(cfg: Config, check_only: bool) -> anyhow::Result<ExitCode> {
    if check_only {
        // A check writes nothing: a missing store is not created (the
        // daemon creates it when it starts).
        let (store, existed) = dkimd_core::store::open_existing_or_empty(&cfg)?;
        let checked = daemon::check(&cfg, store.as_ref())?;
        web::check(&cfg)?;
        outln!("configuration ok: {}", checked.summary(&cfg));
        for p in zone_access(&cfg) {
            outln!("warning: {p}");
        }
        if !existed {
            outln!(
                "no store yet in {}: the daemon creates it when it starts",
                cfg.state_dir.display()
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    // A shared store that does not answer now is connected to later; the
    // local snapshot serves meanwhile.
    let store = dkimd_core::store::open_for_daemon(&cfg)?;
    // The store's state must make a snapshot before any socket is bound.
    let checked = daemon::check(&cfg, store.as_ref())?;
    logging::init(cfg.milter.log_level);
    // Found now rather than at the first key change, which may be months away.
    for p in zone_access(&cfg) {
        tracing::warn!("publishing keys will fail: {p}");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the runtime: {e}"))?;
    rt.block_on(serve(cfg, store, checked))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(
    cfg: Config,
    store: Box<dyn dkimd_core::store::Store>,
    checked: daemon::Checked,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let clock = dkimd_core::clock::system();
    let listener = daemon::listen(&cfg).await?;
    // The page shares one store for its life; the daemon keeps its own
    // (it watches for changes).
    let page_store = dkimd_core::store::Shared::new(dkimd_core::store::open_for_daemon(&cfg)?);
    let admin = web::bind(&cfg, page_store, clock.clone()).await?;
    let resolver = daemon::verify_resolver(&cfg)?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
    };
    if let Some(admin) = admin {
        tokio::spawn(async move {
            if let Err(e) = web::serve(admin).await {
                tracing::info!("admin page stopped: {e:#}");
            }
        });
    }
    daemon::run_checked(&cfg, listener, store, checked, resolver, clock, shutdown).await
}

/// What would stop this process from editing the configured zone files
/// and reading the secrets and certificates the configuration names.
fn zone_access(cfg: &Config) -> Vec<String> {
    dkimd_core::postfix::access_problems(cfg, &dkimd_core::sys::Account::current())
}
