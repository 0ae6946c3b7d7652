//! The gangway binary: reads settings, starts the Docker provider, the data
//! plane listeners and the admin listener, and wires them together.

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod admin;
mod commands;
mod config_file;
mod listeners;
mod log_format;
mod log_output;
mod routing;
mod settings;

use anyhow::Context;
use clap::Parser;
use settings::{Cli, Command, LogFormat, Settings};
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use tokio::sync::watch;

// mimalloc: compiling a large routing table is mostly allocation, and the
// router benchmark compiles 10,000 hosts in about half the time with it
// (crates/gangway-router/benches/lookup.rs). Built without transparent
// huge pages (the `no_thp` feature): they made no difference to req/s
// here, but made the resident size grow in 2 MiB steps (a base of 17 MB
// instead of 9, and idle connections measured by the step). The v2 line
// (see the workspace's Cargo.toml for why).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code for a setting that cannot be used, as clap uses for bad flags.
const EXIT_BAD_SETTING: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Run(args)) => *args,
        Some(Command::Healthcheck { control_plane_addr }) => {
            return admin::healthcheck(&control_plane_addr)
        }
        Some(Command::Check { file }) => return commands::check(&file),
        Some(Command::Explain(args)) => return commands::explain(&args),
        None => cli.run,
    };
    let settings = match args.validate() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("gangway: {error}");
            return ExitCode::from(EXIT_BAD_SETTING);
        }
    };
    let log = match log_output::BatchedStdout::start() {
        Ok(log) => log,
        Err(error) => {
            eprintln!("gangway: cannot start the log writer thread: {error}");
            return ExitCode::FAILURE;
        }
    };
    init_logging(&settings, log.clone());
    let code = match run(settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "gangway stopped");
            eprintln!("gangway: {error:#}");
            ExitCode::FAILURE
        }
    };
    log.flush_now();
    code
}

fn init_logging(settings: &Settings, out: log_output::BatchedStdout) {
    let filter = tracing_subscriber::EnvFilter::builder().parse_lossy(&settings.log_level);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colours only for a terminal: not in files or `docker logs`.
        .with_ansi(std::io::stdout().is_terminal())
        .with_writer(out.clone());
    match settings.log_format {
        LogFormat::Json => {
            builder.event_format(log_format::JsonLines).init();
            // Installed once, here: there is no earlier one to refuse it.
            let access = Box::new(log_format::JsonAccessLines(out));
            let _ = gangway_proxy::access_log::set_access_log(access);
        }
        LogFormat::Text => builder.init(),
    }
}

fn run(settings: Settings) -> anyhow::Result<()> {
    // Bind everything first: a port that is taken stops start-up at once.
    let http = gangway_proxy::listener::bind_dual_stack(settings.http_port)
        .with_context(|| format!("cannot listen on HTTP_PORT {}", settings.http_port))?;
    let https = match &settings.https {
        Some(https) => Some(
            gangway_proxy::listener::bind_dual_stack(https.port)
                .with_context(|| format!("cannot listen on HTTPS_PORT {}", https.port))?,
        ),
        None => None,
    };
    let admin =
        gangway_proxy::listener::bind(settings.control_plane_addr, false).with_context(|| {
            format!(
                "cannot listen on CONTROL_PLANE_ADDR {}",
                settings.control_plane_addr
            )
        })?;

    // One worker: the runtime runs on this thread with a plain run queue,
    // instead of a worker thread with the queues, stealing and wake-ups
    // that several need. Measured with bench/'s case 1: 10 % less user
    // time a request, 6 % in the profile-guided build (bench/README.md,
    // "One worker").
    let mut builder = if settings.workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(settings.workers);
        builder
    };
    let runtime = builder
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let ready = Arc::new(AtomicBool::new(false));
        let routes = routing::Routes::new(Arc::clone(&ready));
        let proxy = Arc::new(gangway_proxy::Proxy::new(
            routes.table(),
            settings.proxy.clone(),
        ));
        tokio::spawn(gangway_proxy::run_health_checks(routes.table()));
        let mut reserved = vec![
            (settings.http_port, "HTTP_PORT"),
            (settings.control_plane_addr.port(), "CONTROL_PLANE_ADDR"),
        ];
        if let Some(https) = &settings.https {
            reserved.push((https.port, "HTTPS_PORT"));
        }
        let file_listeners = Arc::new(listeners::FileListeners::new(Arc::clone(&proxy), reserved));
        if let Some(config) = settings.config.clone() {
            config_file::apply(
                &routes,
                &file_listeners,
                &config.path,
                config.parsed,
                "config file loaded",
            )
            .await
            .map_err(|e| anyhow::anyhow!("GANGWAY_CONFIG {}: {e}", config.path.display()))?;
            tokio::spawn(config_file::watch(
                config.path,
                config.content,
                Arc::clone(&routes),
                Arc::clone(&file_listeners),
            ));
        }
        let docker_status = gangway_docker::DockerStatus::default();
        tokio::spawn(gangway_docker::run(
            settings.docker.clone(),
            routes.docker_publisher(),
            docker_status.clone(),
        ));
        let admin = tokio::net::TcpListener::from_std(admin)
            .context("cannot register the admin listener")?;
        tokio::spawn(admin::serve(
            admin,
            Arc::new(admin::AdminState {
                ready,
                table: routes.table(),
                http_port: settings.http_port,
                docker: docker_status,
            }),
        ));

        let (stop, stopped) = watch::channel(false);
        let mut servers = tokio::task::JoinSet::new();
        servers.spawn(gangway_proxy::serve(
            Arc::clone(&proxy),
            gangway_proxy::Listener {
                socket: http,
                tls: None,
                h2c: settings.h2c,
            },
            stopped.clone(),
        ));
        if let (Some(socket), Some(https)) = (https, &settings.https) {
            let tls = gangway_proxy::TlsAcceptor::from(Arc::clone(&https.tls));
            servers.spawn(gangway_proxy::serve(
                Arc::clone(&proxy),
                gangway_proxy::Listener {
                    socket,
                    tls: Some(tls),
                    h2c: false,
                },
                stopped.clone(),
            ));
        }
        log_started(&settings);

        shutdown_signal().await;
        tracing::info!("shutting down: no new connections, finishing requests in flight");
        let _ = stop.send(true);
        file_listeners.stop_all().await;
        while servers.join_next().await.is_some() {}
        tracing::info!("gangway stopped");
        Ok(())
    })
}

fn log_started(settings: &Settings) {
    let https = settings.https.as_ref();
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        http_port = settings.http_port,
        https_enabled = https.is_some(),
        https_port = https.map(|h| h.port),
        tls_cert_path = https.map(|h| tracing::field::display(h.cert_path.display())),
        tls_key_path = https.map(|h| tracing::field::display(h.key_path.display())),
        docker_host = %settings.docker.docker_host,
        docker_network = %settings.docker.network,
        label_prefix = %settings.docker.label_prefix,
        control_plane_addr = %settings.control_plane_addr,
        config_file = settings.config.as_ref().map(|c| tracing::field::display(c.path.display())),
        workers = settings.workers,
        "gangway started"
    );
}

/// Resolves on SIGTERM (docker stop) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
