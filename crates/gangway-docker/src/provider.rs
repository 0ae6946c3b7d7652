//! The Docker provider: the first full sync, the event stream, and
//! reconnecting (with a full resync) whenever the engine goes away.

use crate::labels::is_labelled;
use crate::state::{
    classify, Backend, Backends, Classified, Conflict, ContainerFacts, ListenerPorts,
};
use crate::status::{ContainerReport, DockerStatus};
use bollard::models::{ContainerInspectResponse, EventMessage, EventMessageTypeEnum};
use bollard::query_parameters::{EventsOptionsBuilder, ListContainersOptionsBuilder};
use bollard::Docker;
use futures_util::{stream, StreamExt};
use gangway_model::Fragment;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long one Engine API call may take before its response headers arrive.
const API_TIMEOUT: Duration = Duration::from_secs(10);
/// The first and the longest wait between reconnection attempts.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How many containers are inspected at once during a sync.
const INSPECT_CONCURRENCY: usize = 8;

/// Where the provider finds Docker and which containers it routes.
#[derive(Debug, Clone)]
pub struct DockerSettings {
    /// `DOCKER_HOST`: `unix:///path` or `tcp://host:port`.
    pub docker_host: String,
    /// Only containers attached to this network are routed.
    pub network: String,
    /// Labels are read under this prefix (`reverse-proxy.`).
    pub label_prefix: String,
    /// The listener ports, for `redirect-to-https` labels.
    pub ports: ListenerPorts,
}

/// What kind of change produced an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateKind {
    /// A full list of containers was read (at start or after reconnecting).
    Sync,
    /// A Docker event changed a container.
    Event,
}

/// A new version of the provider's routes.
#[derive(Debug, Clone)]
pub struct Update {
    /// The routes and pools.
    pub fragment: Fragment,
    /// What changed, for logs and the snapshot's cause.
    pub cause: String,
    /// Whether this came from a full sync or from one event.
    pub kind: UpdateKind,
    /// When Docker says the triggering event happened.
    pub event_time: Option<SystemTime>,
}

/// Receives every update; called on the provider's task, so it must be quick.
pub type Publish = Arc<dyn Fn(Update) + Send + Sync>;

/// Why the connection to Docker ended.
#[derive(Debug, thiserror::Error)]
enum ConnectionLost {
    #[error(transparent)]
    Api(#[from] bollard::errors::Error),
    #[error("the event stream ended")]
    StreamEnded,
}

/// Follows Docker forever: connects, syncs, applies events, and after any
/// failure keeps the last routes, waits (with backoff) and starts again.
pub async fn run(settings: DockerSettings, publish: Publish, status: DockerStatus) {
    let mut provider = Provider {
        settings,
        publish,
        status,
        backends: Backends::default(),
        last_published: None,
        last_conflicts: Vec::new(),
    };
    let mut backoff = BACKOFF_MIN;
    loop {
        let synced = provider.connect_and_follow().await;
        let error = match synced {
            Ok(never) => match never {},
            Err((error, was_synced)) => {
                if was_synced {
                    backoff = BACKOFF_MIN;
                }
                error
            }
        };
        provider.status.set_connected(false);
        tracing::warn!(
            docker_host = %provider.settings.docker_host,
            error = %error,
            retry_in_ms = backoff.as_millis() as u64,
            "docker unavailable; serving the last known routes and retrying"
        );
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

enum Never {}

struct Provider {
    settings: DockerSettings,
    publish: Publish,
    status: DockerStatus,
    backends: Backends,
    last_published: Option<Fragment>,
    last_conflicts: Vec<Conflict>,
}

impl Provider {
    /// Returns only on failure, with whether a sync had completed first.
    async fn connect_and_follow(&mut self) -> Result<Never, (ConnectionLost, bool)> {
        let docker = self.connect().await.map_err(|e| (e.into(), false))?;
        // Events are requested from a moment before the list is read, so
        // nothing that happens during the sync is missed; replays are harmless
        // because every event leads to a fresh inspect.
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs().saturating_sub(1))
            .unwrap_or(0);
        let filters = HashMap::from([(
            "type".to_owned(),
            vec!["container".to_owned(), "network".to_owned()],
        )]);
        let options = EventsOptionsBuilder::default()
            .since(&since.to_string())
            .filters(&filters)
            .build();
        let mut events = docker.events(Some(options));
        self.sync(&docker).await.map_err(|e| (e, false))?;
        loop {
            // Containers routed on a `route-while-starting` grace are looked
            // at again when it ends.
            let (ended, next) = self.backends.graces(SystemTime::now());
            for id in ended {
                let changed = self
                    .refresh(&docker, &id, false)
                    .await
                    .map_err(|e| (e, true))?;
                if changed {
                    self.publish_update(
                        format!("container {} starting grace over", short(&id)),
                        UpdateKind::Event,
                        None,
                        false,
                    );
                }
            }
            let wait = next
                .and_then(|t| t.duration_since(SystemTime::now()).ok())
                .unwrap_or(Duration::from_secs(3600));
            tokio::select! {
                event = events.next() => {
                    let Some(event) = event else { break };
                    let event = event.map_err(|e| (e.into(), true))?;
                    self.on_event(&docker, event).await.map_err(|e| (e, true))?;
                }
                () = tokio::time::sleep(wait) => {}
            }
        }
        Err((ConnectionLost::StreamEnded, true))
    }

    async fn connect(&self) -> Result<Docker, bollard::errors::Error> {
        let docker =
            Docker::connect_with_host(&self.settings.docker_host)?.with_timeout(API_TIMEOUT);
        // New engines refuse clients that ask for an API version they dropped,
        // old ones refuse versions they do not know: agree on one first.
        let docker = docker.negotiate_version().await?;
        tracing::info!(
            docker_host = %self.settings.docker_host,
            api_version = %docker.client_version(),
            "docker connected"
        );
        self.status.set_connected(true);
        Ok(docker)
    }

    /// Reads every labelled container and replaces what was known.
    async fn sync(&mut self, docker: &Docker) -> Result<(), ConnectionLost> {
        // Docker filters labels by exact key only, and routes may be named
        // (`<prefix><name>.host`): list all, keep those with a label under
        // the prefix.
        let options = ListContainersOptionsBuilder::default().all(true).build();
        let listed = docker.list_containers(Some(options)).await?;
        let prefix = &self.settings.label_prefix;
        let ids: Vec<String> = listed
            .into_iter()
            .filter(|c| {
                c.labels
                    .as_ref()
                    .is_some_and(|l| is_labelled(l.keys(), prefix))
            })
            .filter_map(|c| c.id)
            .collect();
        let inspected: Vec<_> = stream::iter(ids.iter().cloned())
            .map(|id| async move { (id.clone(), inspect(docker, &id).await) })
            .buffer_unordered(INSPECT_CONCURRENCY)
            .collect()
            .await;

        let mut seen = Vec::with_capacity(inspected.len());
        for (id, facts) in inspected {
            if let Some(facts) = facts? {
                seen.push(id);
                self.observe(&facts);
            }
        }
        // Labelled but unrouted containers (skipped, off the network) that
        // are gone from the list leave the report too.
        let mut listed: Vec<String> = ids.clone();
        listed.retain(|id| seen.contains(id));
        self.status.retain(&listed);
        for gone in self
            .backends
            .ids()
            .into_iter()
            .filter(|id| !seen.contains(id))
        {
            self.forget(&gone);
        }
        let (routed, serving) = self.backends.counts();
        tracing::info!(containers = ids.len(), routed, serving, "docker synced");
        self.check_network(docker).await?;
        self.publish_update(
            format!("docker sync: {routed} containers routed"),
            UpdateKind::Sync,
            None,
            true,
        );
        Ok(())
    }

    /// Warns when the proxy network does not exist: nothing can be routed
    /// until it does, and the fix is one command.
    async fn check_network(&self, docker: &Docker) -> Result<(), ConnectionLost> {
        let network = &self.settings.network;
        match docker.inspect_network(network, None).await {
            Ok(_) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {
                tracing::warn!(
                    network = %network,
                    fix = %format!("create it with `docker network create {network}` and attach your containers to it"),
                    "proxy network does not exist"
                );
                Ok(())
            }
            Err(error) => Err(error.into()),
        }
    }

    async fn on_event(
        &mut self,
        docker: &Docker,
        event: EventMessage,
    ) -> Result<(), ConnectionLost> {
        let action = event.action.as_deref().unwrap_or_default();
        let attributes = event.actor.as_ref().and_then(|a| a.attributes.as_ref());
        let attribute = |key: &str| attributes.and_then(|a| a.get(key)).map(String::as_str);
        let (id, relevant) = match event.typ {
            Some(EventMessageTypeEnum::CONTAINER) => {
                let id = event
                    .actor
                    .as_ref()
                    .and_then(|a| a.id.clone())
                    .unwrap_or_default();
                let labelled =
                    attributes.is_some_and(|a| is_labelled(a.keys(), &self.settings.label_prefix));
                let relevant = labelled || self.backends.contains(&id);
                (id, relevant)
            }
            Some(EventMessageTypeEnum::NETWORK) => {
                let on_our_network = attribute("name") == Some(self.settings.network.as_str());
                let relevant = on_our_network && matches!(action, "connect" | "disconnect");
                (
                    attribute("container").unwrap_or_default().to_owned(),
                    relevant,
                )
            }
            _ => return Ok(()),
        };
        if !relevant || id.is_empty() {
            return Ok(());
        }
        // Network events carry the network's name, not the container's: name
        // the container from what is known of it, else by its short id.
        let name = match event.typ {
            Some(EventMessageTypeEnum::CONTAINER) => attribute("name"),
            _ => self.backends.get(&id).map(|b| b.name.as_str()),
        };
        let container = name.map_or_else(|| short(&id).to_owned(), str::to_owned);
        tracing::info!(action, container = %container, container_id = %short(&id), "docker event");
        let event_time = event
            .time_nano
            .and_then(|n| u64::try_from(n).ok())
            .map(|n| UNIX_EPOCH + Duration::from_nanos(n));

        let changed = match action {
            "kill" if attribute("signal").is_some_and(terminates) => {
                // `docker stop` sends SIGTERM (kill) long before the process
                // exits (die): leave the pool now so no new request lands on
                // a process that is shutting down.
                self.change(&id, |b| b.stopping = true)
            }
            "stop" | "die" | "oom" => self.change(&id, |b| b.serving = false),
            "pause" => self.change(&id, |b| b.serving = false),
            "destroy" => {
                self.status.remove(&id);
                self.forget(&id)
            }
            // `docker run` attaches the network just before starting the
            // process, and an inspect then waits for the start to finish
            // (hundreds of ms, holding up every later event). A container
            // known not to run is refreshed by its `start` event instead.
            "connect" if self.backends.get(&id).is_some_and(|b| !b.serving) => false,
            "start" | "restart" | "unpause" | "rename" | "update" | "create" | "connect"
            | "disconnect" => {
                let restarted = matches!(action, "start" | "restart");
                self.refresh(docker, &id, restarted).await?
            }
            a if a.starts_with("health_status") => self.refresh(docker, &id, false).await?,
            _ => false,
        };
        if changed {
            self.publish_update(
                format!("container {container} {action}"),
                UpdateKind::Event,
                event_time,
                false,
            );
        }
        Ok(())
    }

    /// Inspects one container again and records what it now is.
    async fn refresh(
        &mut self,
        docker: &Docker,
        id: &str,
        restarted: bool,
    ) -> Result<bool, ConnectionLost> {
        match inspect(docker, id).await? {
            Some(mut facts) => {
                if !restarted {
                    if let Some(b) = self.backends.get(id) {
                        // A kill was seen: the container is on its way out even
                        // if Docker still calls it running.
                        facts.running &= !b.stopping;
                    }
                }
                Ok(self.observe(&facts))
            }
            None => {
                self.status.remove(id);
                Ok(self.forget(id))
            }
        }
    }

    /// Records one container's facts; returns whether routing changed.
    fn observe(&mut self, facts: &ContainerFacts) -> bool {
        let prefix = &self.settings.label_prefix;
        let report = |status, label: Option<&str>, problem: Option<String>| ContainerReport {
            name: facts.name.clone(),
            id: short(&facts.id).to_owned(),
            status,
            label: label.map(str::to_owned),
            problem,
        };
        match classify(facts, prefix, &self.settings.network, SystemTime::now()) {
            Classified::Routed(backend) => {
                self.status.set(&facts.id, report("routed", None, None));
                let before = self.backends.insert(facts.id.clone(), backend.clone());
                log_target_change(&facts.id, before.as_ref(), Some(&backend));
                before.as_ref() != Some(&backend)
            }
            Classified::NotLabelled => {
                self.status.remove(&facts.id);
                self.forget(&facts.id)
            }
            Classified::BadLabels(error) => {
                tracing::warn!(
                    container = %facts.name,
                    container_id = %short(&facts.id),
                    label = error.label(),
                    reason = %error,
                    "container skipped"
                );
                self.status.set(
                    &facts.id,
                    report("skipped", Some(error.label()), Some(error.to_string())),
                );
                self.forget(&facts.id)
            }
            Classified::OffNetwork { attached } => {
                let fix = format!(
                    "attach it with `docker network connect {} {}`",
                    self.settings.network, facts.name
                );
                tracing::warn!(
                    container = %facts.name,
                    container_id = %short(&facts.id),
                    network = %self.settings.network,
                    attached = %attached.join(","),
                    fix = %fix,
                    "container not on proxy network"
                );
                let problem = format!(
                    "not attached to the proxy network {}; {fix}",
                    self.settings.network
                );
                self.status.set(
                    &facts.id,
                    report("not on proxy network", None, Some(problem)),
                );
                self.forget(&facts.id)
            }
        }
    }

    fn change(&mut self, id: &str, change: impl FnOnce(&mut Backend)) -> bool {
        match self.backends.update(id, change) {
            Some((before, after)) => {
                log_target_change(id, Some(&before), Some(&after));
                before != after
            }
            None => false,
        }
    }

    fn forget(&mut self, id: &str) -> bool {
        match self.backends.remove(id) {
            Some(before) => {
                log_target_change(id, Some(&before), None);
                true
            }
            None => false,
        }
    }

    fn publish_update(
        &mut self,
        cause: String,
        kind: UpdateKind,
        event_time: Option<SystemTime>,
        always: bool,
    ) {
        let (fragment, conflicts) = self.backends.fragment(self.settings.ports);
        if conflicts != self.last_conflicts {
            for c in &conflicts {
                tracing::warn!(
                    host = %c.host,
                    path = %c.path,
                    kept = %c.kept,
                    skipped = %c.skipped,
                    fix = "give both containers the same route labels, or different paths, methods, headers or priorities",
                    "route conflict: two containers claim the same route with different settings"
                );
            }
            self.status.set_conflicts(&conflicts);
            self.last_conflicts = conflicts;
        }
        if !always && self.last_published.as_ref() == Some(&fragment) {
            return;
        }
        self.last_published = Some(fragment.clone());
        (self.publish)(Update {
            fragment,
            cause,
            kind,
            event_time,
        });
    }
}

/// Logs a backend entering or leaving its pools.
fn log_target_change(id: &str, before: Option<&Backend>, after: Option<&Backend>) {
    let old = before.map(Backend::targets).unwrap_or_default();
    let new = after.map(Backend::targets).unwrap_or_default();
    if old == new {
        return;
    }
    let join = |addrs: &[std::net::SocketAddr]| {
        addrs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    if let (false, Some(b)) = (old.is_empty(), before) {
        tracing::info!(container = %b.name, container_id = %short(id), addr = %join(&old), hosts = %b.hosts().join(","), "backend removed");
    }
    if let (false, Some(b)) = (new.is_empty(), after) {
        tracing::info!(container = %b.name, container_id = %short(id), addr = %join(&new), hosts = %b.hosts().join(","), "backend added");
    }
}

/// Signals after which a container's process is expected to exit.
fn terminates(signal: &str) -> bool {
    matches!(
        signal,
        "15" | "9"
            | "2"
            | "3"
            | "SIGTERM"
            | "SIGKILL"
            | "SIGINT"
            | "SIGQUIT"
            | "TERM"
            | "KILL"
            | "INT"
            | "QUIT"
    )
}

/// The 12-character id Docker shows to people.
fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// Reads one container; `None` if it no longer exists.
async fn inspect(docker: &Docker, id: &str) -> Result<Option<ContainerFacts>, ConnectionLost> {
    match docker.inspect_container(id, None).await {
        Ok(response) => Ok(Some(facts_from(response))),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

fn facts_from(response: ContainerInspectResponse) -> ContainerFacts {
    let state = response.state.unwrap_or_default();
    let networks = response
        .network_settings
        .and_then(|n| n.networks)
        .unwrap_or_default()
        .into_iter()
        .map(|(name, endpoint)| {
            let ip = endpoint
                .ip_address
                .filter(|ip| !ip.is_empty())
                .or(endpoint.global_ipv6_address.filter(|ip| !ip.is_empty()))
                .and_then(|ip| ip.parse().ok());
            (name, ip)
        })
        .collect();
    ContainerFacts {
        id: response.id.unwrap_or_default(),
        name: response
            .name
            .map(|n| n.trim_start_matches('/').to_owned())
            .unwrap_or_default(),
        labels: response.config.and_then(|c| c.labels).unwrap_or_default(),
        running: state.running.unwrap_or(false),
        paused: state.paused.unwrap_or(false),
        health: state
            .health
            .and_then(|h| h.status)
            .map(|s| s.to_string())
            .filter(|s| !s.is_empty() && s != "none"),
        networks,
        started_at: state.started_at.as_deref().and_then(parse_rfc3339),
    }
}

/// Docker's timestamps: `2026-11-24T15:47:01.123456789Z` (always UTC).
fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let (date, time) = text.strip_suffix('Z')?.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, fraction) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.splitn(3, ':').map(|p| p.parse::<u64>().ok());
    let (h, m, s) = (t.next()??, t.next()??, t.next()??);
    // Days from 1970-01-01 (Howard Hinnant's days_from_civil).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = u64::try_from(era * 146_097 + doe - 719_468).ok()?;
    let nanos: u32 = format!("{fraction:0<9}").get(..9)?.parse().ok()?;
    Some(UNIX_EPOCH + Duration::new(days * 86_400 + h * 3600 + m * 60 + s, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_timestamps() {
        let t = parse_rfc3339("2026-11-24T15:47:01.5Z").unwrap();
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap(),
            Duration::new(1_795_535_221, 500_000_000)
        );
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(UNIX_EPOCH));
        assert_eq!(
            parse_rfc3339("0001-01-01T00:00:00Z"),
            None,
            "Docker's zero time"
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}
